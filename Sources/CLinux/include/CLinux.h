#ifndef CUREC_CLINUX_H
#define CUREC_CLINUX_H
/* Linux APIs that the Glibc module does not export to Swift: epoll, eventfd, accept4. */
#include <sys/epoll.h>
#include <sys/eventfd.h>

/* Accepts one connection on listening socket `fd` as a non-blocking, close-on-exec socket.
 * Returns the new descriptor, or -1 with errno set (EAGAIN when none is pending).
 * Thread-safe; the caller owns and closes the returned descriptor. */
int curec_accept_nonblocking(int fd);
#endif

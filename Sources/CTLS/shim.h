#ifndef CUREC_CTLS_SHIM_H
#define CUREC_CTLS_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>

/* OpenSSL's configuration macros are not visible to Swift; these wrap the few we use. */

/* Non-blocking writes: a retried SSL_write may pass a moved buffer, and may write part of it. */
static inline void curec_tls_set_modes(SSL_CTX *context) {
    SSL_CTX_set_mode(context, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
}

/* ALPN on the server: only "h2" is spoken; a client that offers ALPN without it is refused. */
static inline int curec_tls_select_h2(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                      const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    unsigned int index = 0;
    while (index < inlen) {
        unsigned int length = in[index];
        if (index + 1 + length > inlen) break;
        if (length == 2 && memcmp(in + index + 1, "h2", 2) == 0) {
            *out = in + index + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        index += 1 + length;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static inline void curec_tls_server_alpn_h2(SSL_CTX *context) {
    SSL_CTX_set_alpn_select_cb(context, curec_tls_select_h2, NULL);
}

/* ALPN on the client: offer "h2". Returns 0 on success. */
static inline int curec_tls_client_alpn_h2(SSL_CTX *context) {
    static const unsigned char protocols[] = {2, 'h', '2'};
    return SSL_CTX_set_alpn_protos(context, protocols, sizeof(protocols));
}

/* Client: check the server's name against its certificate and send it as SNI. */
static inline int curec_tls_client_set_host(SSL *ssl, const char *host, int is_ip) {
    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) return 0;
    if (is_ip) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        return X509_VERIFY_PARAM_set1_ip_asc(param, host);
    }
    return SSL_set1_host(ssl, host);
}

/* The protocol ALPN chose, copied into `out` (at most `capacity` bytes); returns its length. */
static inline int curec_tls_alpn_selected(const SSL *ssl, char *out, int capacity) {
    const unsigned char *data = NULL;
    unsigned int length = 0;
    SSL_get0_alpn_selected(ssl, &data, &length);
    if (data == NULL || (int)length > capacity) return 0;
    memcpy(out, data, length);
    return (int)length;
}

/* The most recent OpenSSL error on this thread as text (empty if none); clears the queue. */
static inline void curec_tls_last_error(char *out, size_t capacity) {
    unsigned long code = ERR_peek_last_error();
    if (capacity > 0) out[0] = 0;
    if (code != 0) ERR_error_string_n(code, out, capacity);
    ERR_clear_error();
}

/* SHA-256 of `length` bytes into `digest` (32 bytes); returns 1 on success. */
static inline int curec_sha256(const void *data, size_t length, unsigned char *digest) {
    unsigned int written = 0;
    return EVP_Digest(data, length, digest, &written, EVP_sha256(), NULL) == 1 && written == 32;
}

/* SHA-256 over data given in pieces (files read in chunks): begin, update, end (which frees). */
static inline EVP_MD_CTX *curec_sha256_begin(void) {
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (context != NULL && EVP_DigestInit_ex(context, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(context);
        return NULL;
    }
    return context;
}

static inline int curec_sha256_update(EVP_MD_CTX *context, const void *data, size_t length) {
    return EVP_DigestUpdate(context, data, length);
}

/* Writes the 32-byte digest and frees `context`; returns 1 on success. */
static inline int curec_sha256_end(EVP_MD_CTX *context, unsigned char *digest) {
    unsigned int written = 0;
    int ok = EVP_DigestFinal_ex(context, digest, &written) == 1 && written == 32;
    EVP_MD_CTX_free(context);
    return ok;
}
#endif

#ifndef CUREC_COPENBLAS_SHIM_H
#define CUREC_COPENBLAS_SHIM_H
#include <cblas.h>
#endif

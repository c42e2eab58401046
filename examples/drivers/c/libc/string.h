/* The part of <string.h> the driver and its generated bindings use; see libc.c. */
#ifndef LIBC_STRING_H
#define LIBC_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
size_t strlen(const char *s);

#endif

/* The part of <stdlib.h> the driver and its generated bindings use; see libc.c. */
#ifndef C_FILE_STDLIB_H
#define C_FILE_STDLIB_H

#include <stddef.h>

void *realloc(void *ptr, size_t size);
void free(void *ptr);
_Noreturn void abort(void);

#endif

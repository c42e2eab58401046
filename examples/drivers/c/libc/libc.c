/*
 * The few C library functions the driver and its bindings call, for a
 * freestanding wasm32 build: without wasi-libc the component imports
 * nothing but the host interface, and needs no WASI adapter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * Allocator. Blocks are powers of two, from 16 bytes up, each with an 8-byte
 * header holding its size class, so payloads are 8-aligned (the largest
 * alignment of the canonical ABI). Fresh blocks are cut from the end of the
 * heap, which starts at wasm-ld's __heap_base and grows linear memory as
 * needed; freed blocks go to the free list of their class and are reused,
 * never coalesced. That suits the driver: each call allocates a few small
 * blocks and frees them before it returns (or the bindings free them right
 * after, for what it returns), the same sizes every time, so memory stays
 * flat however long an instance lives.
 */

#define PAGE_SIZE 65536u
#define MIN_CLASS 4  /* 16-byte blocks */
#define MAX_CLASS 31 /* 2 GiB blocks */

typedef union header {
    uint32_t class;
    uint64_t align; /* keeps the payload after it 8-aligned */
} header;

/* A free block's payload holds the next free block of its class. */
typedef struct free_block {
    header header;
    struct free_block *next;
} free_block;

extern unsigned char __heap_base;

static free_block *free_lists[MAX_CLASS + 1];
static uintptr_t heap_end; /* 0 until the first allocation */

/* The smallest class whose blocks hold `size` bytes after the header, or 0. */
static uint32_t class_for(size_t size) {
    for (uint32_t class = MIN_CLASS; class <= MAX_CLASS; class++) {
        if (size <= ((size_t)1 << class) - sizeof(header)) {
            return class;
        }
    }
    return 0;
}

/* A fresh block of `class` from the end of the heap, or NULL. */
static header *cut(uint32_t class) {
    if (heap_end == 0) {
        heap_end = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
    }
    uint64_t end = (uint64_t)heap_end + ((uint64_t)1 << class);
    uint64_t mapped = (uint64_t)__builtin_wasm_memory_size(0) * PAGE_SIZE;
    if (end > mapped) {
        uint64_t pages = (end - mapped + PAGE_SIZE - 1) / PAGE_SIZE;
        if (__builtin_wasm_memory_grow(0, (size_t)pages) == (size_t)-1) {
            return NULL;
        }
    }
    header *block = (header *)heap_end;
    heap_end = (uintptr_t)end;
    block->class = class;
    return block;
}

static void *allocate(size_t size) {
    uint32_t class = class_for(size);
    if (class == 0) {
        return NULL;
    }
    free_block *reused = free_lists[class];
    if (reused != NULL) {
        free_lists[class] = reused->next;
        return &reused->next;
    }
    header *block = cut(class);
    return block == NULL ? NULL : block + 1;
}

void *malloc(size_t size) {
    return allocate(size);
}

void free(void *ptr) {
    if (ptr == NULL) {
        return;
    }
    free_block *block = (free_block *)((header *)ptr - 1);
    block->next = free_lists[block->header.class];
    free_lists[block->header.class] = block;
}

void *realloc(void *ptr, size_t size) {
    if (ptr == NULL) {
        return allocate(size);
    }
    size_t capacity = ((size_t)1 << ((header *)ptr - 1)->class) - sizeof(header);
    if (size <= capacity) {
        return ptr;
    }
    void *moved = allocate(size);
    if (moved != NULL) {
        memcpy(moved, ptr, capacity);
        free(ptr);
    }
    return moved;
}

/* A trap: the host fails the call and drops the instance. */
_Noreturn void abort(void) {
    __builtin_trap();
}

/* With -mbulk-memory, __builtin_memcpy is the memory.copy instruction, not a
 * call back here. */
void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}

size_t strlen(const char *s) {
    const char *end = s;
    while (*end != '\0') {
        end++;
    }
    return (size_t)(end - s);
}

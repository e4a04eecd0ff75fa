/*
 * safetensors.c - read-only access to a .safetensors file.
 *
 * The format: an 8-byte little-endian header length, a JSON object
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 * "__metadata__": {...}}, then the tensor bytes (offsets relative to the
 * end of the header). The file is mapped once, read-only, and tensors are
 * handed out as pointers into the mapping (F32) or as float copies (F16,
 * converted at load). Read encoder_safetensors_f32 first.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cache/encoder_internal.h"
#include "util/alloc.h"

/* Refuse headers larger than this: a real model's is tens of kB. */
#define HEADER_MAX_BYTES (64u << 20)

struct encoder_safetensors {
    const unsigned char *map; /* the whole file, PROT_READ */
    size_t map_len;           /* its size in bytes */
    const unsigned char *data; /* first byte after the header */
    size_t data_len;          /* bytes from data to the end of the file */
    json_t *header;           /* the parsed header, owned */
    float **copies;           /* F16 tensors converted to F32, owned */
    size_t ncopies;           /* entries in copies */
};

enum rl_err encoder_safetensors_open(const char *path,
                                     struct encoder_safetensors **out,
                                     char *err, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, n, "opening %s failed", path);
        return RL_E_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        snprintf(err, n, "%s is not a safetensors file (too short)", path);
        return RL_E_CONFIG;
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, n, "mapping %s failed", path);
        return RL_E_IO;
    }
    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) {
        hlen = (hlen << 8) | p[i];
    }
    json_t *header = NULL;
    if (hlen <= HEADER_MAX_BYTES && hlen <= len - 8) {
        header = json_loadb((const char *)p + 8, (size_t)hlen, 0, NULL);
    }
    if (header == NULL || !json_is_object(header)) {
        json_decref(header);
        munmap(map, len);
        snprintf(err, n, "%s: the safetensors header is not valid", path);
        return RL_E_CONFIG;
    }
    struct encoder_safetensors *st = rl_calloc(1, sizeof(*st));
    st->map = p;
    st->map_len = len;
    st->data = p + 8 + hlen;
    st->data_len = len - 8 - (size_t)hlen;
    st->header = header;
    *out = st;
    return RL_OK;
}

/* Unmaps the file and frees every F16 copy; NULL is a no-op. */
void encoder_safetensors_close(struct encoder_safetensors *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t i = 0; i < st->ncopies; i++) {
        free(st->copies[i]);
    }
    free(st->copies);
    json_decref(st->header);
    munmap((void *)st->map, st->map_len);
    free(st);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0 && man == 0) {
        bits = sign;
    } else if (exp == 0) { /* subnormal: renormalise */
        exp = 127 - 15 + 1;
        while ((man & 0x400) == 0) {
            man <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* Checks entry's shape against dims; returns its element count or 0. */
static size_t check_shape(json_t *entry, const size_t *dims, size_t ndims)
{
    json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape) || json_array_size(shape) != ndims) {
        return 0;
    }
    size_t count = 1;
    for (size_t i = 0; i < ndims; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d)
            || json_integer_value(d) != (json_int_t)dims[i]) {
            return 0;
        }
        count *= dims[i];
    }
    return count;
}

enum rl_err encoder_safetensors_f32(struct encoder_safetensors *st,
                                    const char *name, const size_t *dims,
                                    size_t ndims, const float **out,
                                    char *err, size_t n)
{
    json_t *entry = json_object_get(st->header, name);
    if (!json_is_object(entry)) {
        snprintf(err, n, "the weights have no tensor %s", name);
        return RL_E_CONFIG;
    }
    size_t count = check_shape(entry, dims, ndims);
    const char *dtype = json_string_value(json_object_get(entry, "dtype"));
    json_t *offs = json_object_get(entry, "data_offsets");
    json_int_t begin = json_integer_value(json_array_get(offs, 0));
    json_int_t end = json_integer_value(json_array_get(offs, 1));
    size_t esize = dtype == NULL ? 0 : strcmp(dtype, "F32") == 0 ? 4
                 : strcmp(dtype, "F16") == 0 ? 2 : 0;
    if (count == 0 || esize == 0) {
        snprintf(err, n, "tensor %s: unexpected shape or dtype %s", name,
                 dtype != NULL ? dtype : "(none)");
        return RL_E_CONFIG;
    }
    if (begin < 0 || end < begin || (size_t)end > st->data_len
        || (size_t)(end - begin) != count * esize) {
        snprintf(err, n, "tensor %s: bad data_offsets", name);
        return RL_E_CONFIG;
    }
    const unsigned char *p = st->data + begin;
    if (esize == 4 && ((uintptr_t)p % 4) == 0) {
        *out = (const float *)(const void *)p;
        return RL_OK;
    }
    float *copy = rl_malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) {
        if (esize == 4) {
            memcpy(&copy[i], p + 4 * i, 4);
        } else {
            copy[i] = f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        }
    }
    st->copies = rl_realloc(st->copies, (st->ncopies + 1) * sizeof(float *));
    st->copies[st->ncopies++] = copy;
    *out = copy;
    return RL_OK;
}

/*
 * hex.h — lowercase hexadecimal encoding of bytes.
 *
 * One encoder for every digest, signature, secret and id Vigil prints as hex
 * (API key hashes, webhook signatures and secrets, request ids): lowercase,
 * no separators, always NUL-terminated. OpenSSL's OPENSSL_buf2hexstr writes
 * uppercase with separators, so it does not serve.
 */
#ifndef VIGIL_UTIL_HEX_H
#define VIGIL_UTIL_HEX_H

#include <stddef.h>

/* Writes the 2 * n hex digits of in[0..n) and a NUL to out (2 * n + 1
 * bytes); returns out + 2 * n (the NUL), so encodings can be appended. */
char *hex_encode(const unsigned char *in, size_t n, char *out);

#endif

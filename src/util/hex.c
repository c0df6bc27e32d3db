/* hex.c — see hex.h. */
#include "util/hex.h"

char *hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        *out++ = digits[in[i] >> 4];
        *out++ = digits[in[i] & 0x0f];
    }
    *out = '\0';
    return out;
}

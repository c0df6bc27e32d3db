/*
 * test_hex.c — hex_encode against snprintf("%02x") for every byte value,
 * and its edges (no bytes, appending, the NUL).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "util/hex.h"

static void every_byte_matches_printf(void **state)
{
    (void)state;
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char got[2 * 256 + 1], want[2 * 256 + 1];
    for (int i = 0; i < 256; i++)
        snprintf(want + 2 * i, 3, "%02x", all[i]);
    char *end = hex_encode(all, sizeof all, got);
    assert_string_equal(got, want);
    assert_ptr_equal(end, got + 512);
    assert_int_equal(*end, '\0');
}

static void empty_and_appending(void **state)
{
    (void)state;
    char out[16];
    memset(out, 'x', sizeof out);
    assert_ptr_equal(hex_encode((const unsigned char *)"", 0, out), out);
    assert_string_equal(out, "");
    const unsigned char a[] = {0xde, 0xad}, b[] = {0xbe, 0xef, 0x01};
    char *p = hex_encode(a, sizeof a, out);
    p = hex_encode(b, sizeof b, p);
    assert_string_equal(out, "deadbeef01");
    assert_int_equal(out[11], 'x'); /* nothing written past the NUL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_byte_matches_printf),
        cmocka_unit_test(empty_and_appending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

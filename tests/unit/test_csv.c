/*
 * test_csv.c — the RFC 4180 record parser: quoting, escaped quotes, CRLF,
 * records split across reads, and the malformed inputs it must refuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "domain/csv.h"

/* Parses all of s (at EOF) as one record and checks its fields. */
static void expect_fields(const char *s, size_t want_consumed, size_t n, const char *const *want)
{
    csv_record rec = {0};
    size_t used = 0;
    const char *why = NULL;
    int rc = csv_parse_line(s, strlen(s), 1, &rec, &used, &why);
    if (rc != CSV_RECORD)
        fail_msg("\"%s\": rc %d (%s)", s, rc, why ? why : "");
    assert_int_equal(used, want_consumed);
    assert_int_equal(rec.nfields, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(csv_field(&rec, i), want[i]);
        assert_int_equal(rec.len[i], strlen(want[i]));
    }
    csv_record_free(&rec);
}

static void test_plain_and_quoted(void **state)
{
    expect_fields("a,b,c\n", 6, 3, (const char *[]){"a", "b", "c"});
    expect_fields("a,b,c\r\nnext", 7, 3, (const char *[]){"a", "b", "c"});
    expect_fields("a,,c", 4, 3, (const char *[]){"a", "", "c"});
    expect_fields(",\n", 2, 2, (const char *[]){"", ""});
    expect_fields("\n", 1, 1, (const char *[]){""});
    expect_fields("\"x,y\",z\n", 8, 2, (const char *[]){"x,y", "z"});
    expect_fields("\"say \"\"hi\"\"\",2\n", 15, 2, (const char *[]){"say \"hi\"", "2"});
    expect_fields("\"\"\n", 3, 1, (const char *[]){""});
    expect_fields("\"line1\r\nline2\",b\r\n", 18, 2, (const char *[]){"line1\r\nline2", "b"});
    expect_fields("\"a\"\r\n", 5, 1, (const char *[]){"a"});
    expect_fields("caf\xc3\xa9,9500.00", 13, 2, (const char *[]){"caf\xc3\xa9", "9500.00"});
}

static void expect_error(const char *s, size_t want_consumed, const char *want_why)
{
    csv_record rec = {0};
    size_t used = 0;
    const char *why = NULL;
    int rc = csv_parse_line(s, strlen(s), 1, &rec, &used, &why);
    if (rc != CSV_ERROR)
        fail_msg("\"%s\" accepted (rc %d)", s, rc);
    assert_int_equal(used, want_consumed);
    assert_non_null(why);
    assert_string_equal(why, want_why);
    csv_record_free(&rec);
}

static void test_malformed(void **state)
{
    expect_error("ab\"c,d\nnext\n", 7, "quote inside an unquoted field");
    expect_error("\"ab\"c,d\nnext\n", 8, "text after a closing quote");
    expect_error("\"abc\nno end", 11, "unterminated quoted field");
    expect_error("a\rb\nnext", 4, "bare CR outside quotes");
    /* A newline inside the bad record's quotes does not end it. */
    expect_error("x\"y,\"p\nq\"\nnext", 10, "quote inside an unquoted field");
    char many[200] = "";
    for (int i = 0; i < CSV_MAX_FIELDS; i++)
        strcat(many, "x,");
    strcat(many, "x\n");
    expect_error(many, strlen(many), "too many fields");
}

/* Exactly CSV_MAX_FIELDS fields are allowed. */
static void test_field_limit(void **state)
{
    char line[200] = "";
    for (int i = 0; i < CSV_MAX_FIELDS - 1; i++)
        strcat(line, "x,");
    strcat(line, "y\n");
    csv_record rec = {0};
    size_t used;
    assert_int_equal(csv_parse_line(line, strlen(line), 1, &rec, &used, NULL), CSV_RECORD);
    assert_int_equal(rec.nfields, CSV_MAX_FIELDS);
    assert_string_equal(csv_field(&rec, CSV_MAX_FIELDS - 1), "y");
    csv_record_free(&rec);
}

/* Before EOF, a buffer that ends mid-record asks for more input. */
static void test_incomplete(void **state)
{
    static const char *const partial[] = {"a,b", "\"open", "\"x\"", "a\r", ""};
    csv_record rec = {0};
    size_t used;
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(csv_parse_line(partial[i], strlen(partial[i]), 0, &rec, &used, NULL),
                         CSV_INCOMPLETE);
    assert_int_equal(csv_parse_line("", 0, 1, &rec, &used, NULL), CSV_END);
    /* At EOF the same text is a last record without a line end. */
    assert_int_equal(csv_parse_line("a,b", 3, 1, &rec, &used, NULL), CSV_RECORD);
    assert_int_equal(used, 3);
    assert_int_equal(rec.nfields, 2);
    csv_record_free(&rec);
}

/* Walking a whole file record by record; the record buffer is reused. */
static void test_sequence(void **state)
{
    const char *text = "id,amount\r\n1,\"9,500.00\"\r\n\r\n\"2\",\"x\"\"y\"";
    size_t pos = 0, len = strlen(text), used;
    csv_record rec = {0};
    int n = 0;
    const char *want[][2] = {{"id", "amount"}, {"1", "9,500.00"}, {"", NULL}, {"2", "x\"y"}};
    int rc;
    while ((rc = csv_parse_line(text + pos, len - pos, 1, &rec, &used, NULL)) == CSV_RECORD) {
        assert_true(n < 4);
        assert_string_equal(csv_field(&rec, 0), want[n][0]);
        assert_int_equal(rec.nfields, want[n][1] ? 2 : 1);
        if (want[n][1])
            assert_string_equal(csv_field(&rec, 1), want[n][1]);
        pos += used;
        n++;
    }
    assert_int_equal(rc, CSV_END);
    assert_int_equal(n, 4);
    csv_record_free(&rec);
    csv_record_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_quoted), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_field_limit),      cmocka_unit_test(test_incomplete),
        cmocka_unit_test(test_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

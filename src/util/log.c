/*
 * log.c — JSON log lines. A line is built in memory and written with one
 * write(2) so lines from different threads never interleave.
 */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static log_level min_level = LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level level)
{
    min_level = level;
}

log_level log_level_parse(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (log_level)i;
    return LOG_INFO;
}

static void timestamp(char out[48])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000);
}

void log_json(log_level level, json_t *fields)
{
    if (level < min_level || !fields) {
        json_decref(fields);
        return;
    }
    char ts[48];
    timestamp(ts);
    json_t *line = json_pack("{s:s, s:s}", "ts", ts, "level", level_names[level]);
    json_object_update(line, fields);
    json_decref(fields);
    char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(line);
    if (!text)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room: we overwrite the NUL and write n+1 */
    ssize_t w = write(STDERR_FILENO, text, n + 1);
    (void)w; /* nowhere left to report a failed write to stderr */
    free(text);
}

void log_msg(log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_json(level, json_pack("{s:s}", "msg", msg));
}

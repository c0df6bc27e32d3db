/*
 * log.h — structured log lines on stderr, one JSON object per line.
 *
 * Thread-safe (one write(2) per line). Operators grep and ship these; every
 * failure that is not returned to a caller must end up here (invariant 2).
 */
#ifndef VIGIL_UTIL_LOG_H
#define VIGIL_UTIL_LOG_H

#include <jansson.h>

typedef enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

/* Minimum level written (default LOG_INFO; VIGIL_LOG_LEVEL=debug|info|warn|error). */
void log_set_level(log_level level);
log_level log_level_parse(const char *s);

/* Writes {"ts","level","msg"} with msg formatted printf-style. */
void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `fields` (an object; stolen) with "ts" and "level" added. */
void log_json(log_level level, json_t *fields);

#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif

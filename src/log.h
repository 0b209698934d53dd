/* log.h -- levelled logging to stderr or syslog.
 *
 * One process-wide logger. Messages below the configured level cost a
 * comparison. Nothing here allocates. Tokens and secrets must never be
 * passed to these functions: callers log ids, not credentials. */
#ifndef AEOLUS_LOG_H
#define AEOLUS_LOG_H

enum log_level { LL_ERROR = 0, LL_WARN, LL_INFO, LL_DEBUG };

extern int log_level_current;

/* Parses "error", "warn"/"warning", "info", "debug". Returns the level or -1. */
int log_level_parse(const char *s);
const char *log_level_name(int level);

/* Sends messages to syslog (ident "aeolusd") instead of stderr. */
void log_use_syslog(const char *ident);
void log_set_level(int level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LL_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_level_current >= LL_INFO) log_msg(LL_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level_current >= LL_DEBUG) log_msg(LL_DEBUG, __VA_ARGS__); } while (0)

#endif

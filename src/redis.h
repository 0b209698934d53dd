/* redis.h -- one asynchronous Redis connection on the loop, that comes back.
 *
 * hiredis (async) with its libevent adapter. The connection is opened at
 * once and re-opened after any loss with exponential backoff (100 ms to 5
 * s), sending AUTH and SELECT from the URL first. While it is down,
 * redis_command() fails at once rather than queueing without bound.
 *
 * URL forms: redis://[[user]:password@]host[:port][/db], unix:///path[?db=N],
 * or a bare host:port. */
#ifndef AEOLUS_REDIS_H
#define AEOLUS_REDIS_H

#include <stddef.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

struct redis;

/* reply is NULL when the command failed (connection lost, or redis_free()
 * with the command pending: the callback may then come after redis_free()
 * returns, when it was called from inside a reply callback); it is
 * hiredis's, valid during the callback only. */
typedef void (*redis_reply_cb)(redisReply *reply, void *ud);

/* Parses url and starts connecting. NULL (with err) when the URL is bad. */
struct redis *redis_new(struct event_base *base, const char *url, const char *what,
                        char *err, size_t errlen);
void redis_free(struct redis *r);
/* Checks a URL without connecting. Returns 0, or -1 with a message in err. */
int redis_url_check(const char *url, char *err, size_t errlen);
int redis_connected(const struct redis *r);

/* Tells cb when the connection comes up (up = 1: commands sent from cb go
 * first on the new connection, after AUTH and SELECT) and when it goes down
 * (up = 0: the pending commands have had their NULL replies). Never called
 * from redis_free(). One cb per connection; NULL to stop. */
typedef void (*redis_state_cb)(int up, void *ud);
void redis_on_state(struct redis *r, redis_state_cb cb, void *ud);

/* Sends a command (hiredis format string). Returns 0, or -1 when not
 * connected (cb is then not called). cb may be NULL. */
int redis_command(struct redis *r, redis_reply_cb cb, void *ud, const char *fmt, ...);
int redis_command_argv(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen);

/* Subscribes to channels (a connection that subscribes must not be used
 * for anything else: see STACK-NOTES on hiredis). cb gets every reply of
 * the subscription -- the confirmations and each message, an array
 * ["message", channel, payload] -- for as long as the connection lives;
 * subscribe again from the state callback after a reconnect. Returns 0, or
 * -1 when not connected or argc is not 1 to REDIS_MAX_SUBSCRIBE. */
#define REDIS_MAX_SUBSCRIBE 1024
int redis_subscribe(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                    const char **argv);
/* The same with glob patterns (PSUBSCRIBE): a message comes as
 * ["pmessage", pattern, channel, payload], a confirmation as
 * ["psubscribe", pattern, count]. One connection may do both; cb (the same
 * for both) is the last one given. */
int redis_psubscribe(struct redis *r, redis_reply_cb cb, void *ud, int argc,
                     const char **argv);

#endif

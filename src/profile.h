/* profile.h -- a vocabulary: what the clients of one service send and get.
 *
 * A profile is data: a JSON file (etc/profiles/NAME.json; aeolus-profile(5))
 * parsed into the tables below. Each client event maps onto one built-in
 * action (the C code in app.c that checks, stores and decides) and a list of
 * emits built from JSON templates (tmpl.h) over the action's context:
 *
 *   req      the client's payload (first argument)
 *   user     {id, name, role}
 *   socket   {id}
 *   now      {ms}: the instant of the event
 *   error    {code, message, retryAfter}   (error templates only)
 *   + what the action adds: room, first, last, members, history, message,
 *     users, messages, settings, typing, expiresAt...
 *   item     in an emit with "each": the current element
 *
 * Lifecycle hooks (connect, disconnect, online, offline) are event specs too.
 *
 * The member "http" extends the daemon's own documents ("/", "/health",
 * "/stats"): each an object template over that document, whose members are
 * added to it. "stats" names the roles whose users /stats counts across the
 * cluster. */
#ifndef AEOLUS_PROFILE_H
#define AEOLUS_PROFILE_H

#include <stddef.h>
#include <json-c/json.h>

enum action {
	A_NONE, A_JOIN, A_LEAVE, A_SEND, A_TYPING, A_PRESENCE, A_HISTORY, A_INIT, A_RELAY,
};

enum target { TO_SELF, TO_ROOM, TO_USER, TO_ALL };
/* EXCLUDE_SENDER: like SELF unless messages.echo_sender is on. */
enum { EXCLUDE_NONE, EXCLUDE_SELF, EXCLUDE_SENDER };

struct emit_spec {
	json_object *event;          /* template: the event name */
	enum target to;
	json_object *room;           /* TO_ROOM: template of a room name (default "{room}") */
	json_object *user;           /* TO_USER: template of a user id */
	int exclude;                 /* EXCLUDE_*: who of the actor is left out */
	char *when;                  /* context path that must be truthy; NULL: always */
	int when_not;                /* "!path": must be falsy */
	int reply;                   /* the answer to the request: an ack when one was asked */
	int ack_only;                /* reply with no event when no ack was asked */
	char *each;                  /* path of an array: one emit per element (item); or NULL */
	json_object *data;           /* template of the payload (NULL: no argument) */
};

struct event_spec {
	char *name;
	enum action action;
	json_object *args;           /* object of templates, the action's inputs */
	char **require;              /* req fields that must be present and non-empty;
	                              * an entry "a|b" holds when one of them is */
	size_t nrequire;
	char **self;                 /* req fields that must equal the user's id */
	size_t nself;
	json_object *errors;         /* error code -> message, overriding the defaults */
	char *on_disconnect;         /* join: the event whose emits run for this room on disconnect */
	struct emit_spec *emits;
	size_t nemits;
	struct emit_spec *expired;   /* typing: emits when the entry expires */
	size_t nexpired;
};

/* Bus routes: messages the backend publishes on Redis, in its own shape,
 * become emits (aeolus-profile(5), BUS ROUTES; run by bus_routes.c). */

/* A condition: every test holds. A test reads a context path: truthy (or,
 * negated, falsy), or equal to one of values (or, negated, to none);
 * null among values also stands for a missing value. */
struct bus_test {
	char *path;
	int negate;
	json_object *values;         /* array (a reference), or NULL: truthiness */
};

struct bus_cond {
	struct bus_test *v;
	size_t n;                    /* 0: always */
};

enum bus_kind { BUS_ROOM, BUS_USER, BUS_ROLE, BUS_ALL, BUS_FIRST };

/* Where a route's emit goes: rooms by name, users' personal rooms, the
 * role rooms of roles, every socket, or the first alternative whose
 * condition holds. */
struct bus_target {
	enum bus_kind kind;
	json_object *name;           /* ROOM, USER, ROLE: template of a name or an array of names */
	char *each;                  /* path of an array: name is evaluated per element (item); or NULL */
	struct bus_cond when;
	struct bus_target *first;    /* BUS_FIRST: the alternatives */
	size_t nfirst;
};

struct bus_route {
	json_object *channel;        /* template over the configuration: a channel or a glob pattern */
	struct bus_cond when;        /* on the message as published */
	json_object *event;          /* template: the event name */
	json_object *data;           /* template of the argument, or NULL: none */
	json_object *defaults;       /* object template merged under the message, or NULL */
	struct bus_target *to;
	size_t nto;
	struct bus_target *except;   /* rooms left out */
	size_t nexcept;
};

/* Which JWT key checks tokens when both a secret and a public key could
 * (auth.h). */
enum jwt_key_choice {
	JWT_KEY_PUBLIC,              /* the public key when one is configured, else the secret */
	JWT_KEY_ALGORITHM,           /* auth.jwt_algorithms chooses (seed 002) */
};

#define PROFILE_STATS_ROLES 16   /* the most roles "stats" may name */

struct profile {
	char *name;
	char *file;
	char *path;                  /* Socket.IO path; NULL: the configuration's */
	json_object *config;         /* {"section.key": value}: configuration defaults, or NULL */
	/* auth */
	char **token_sources;        /* "auth.token", "query.token", "header" */
	size_t ntoken_sources;
	char **claim_user_id, **claim_name, **claim_role, **claim_rooms;
	size_t nclaim_user_id, nclaim_name, nclaim_role, nclaim_rooms;
	char *default_role;          /* the role of a user whose token has none, or NULL */
	enum jwt_key_choice jwt_key;
	int anonymous;               /* profile allows anonymous use (no auth at all) */
	/* rooms */
	json_object *personal_room;  /* template, e.g. "user:{user.id}" */
	json_object *role_rooms;     /* {"admin": ["admin", "analyst"], "client": ["*"]} */
	int rooms_from_token;
	/* replies */
	json_object *ack_ok;         /* template: the ack of a successful request */
	json_object *ack_error;      /* template: the ack of a refused request */
	struct emit_spec error;      /* the error event when no ack was asked */
	/* events */
	struct event_spec *events;
	size_t nevents;
	struct event_spec *on_connect, *on_disconnect, *on_online, *on_offline;
	/* "api": events only the backend HTTP API runs (app_run), never a
	 * client: their names are the vocabulary's all the same. */
	struct event_spec *api_events;
	size_t napi_events;
	/* "history": the rooms' histories are lists another program shares
	 * (store.h, list_append), or NULL: the store's own, with ids. */
	json_object *history_key;    /* template of the list's key (over the context) */
	unsigned history_size;       /* elements kept, 1..100000; 0 (not given): history.size */
	struct bus_route *routes;    /* in file order */
	size_t nroutes;
	/* operator endpoints */
	json_object *http;           /* path -> object template ("http"), or NULL */
	char **stats_roles;          /* counted across the cluster ("stats.roles") */
	size_t nstats_roles;
	json_object *root;           /* the parsed file: owns the templates above */
};

/* Loads a profile by name (looked up as DIR/NAME.json) or by path (when
 * name contains a '/' or ends in .json). On error returns NULL with
 * "file:line: reason" in err. */
struct profile *profile_load(const char *name, const char *dir, char *err, size_t errlen);
/* Parses a profile from text (file names the origin in messages). */
struct profile *profile_parse(const char *text, size_t len, const char *file,
                              char *err, size_t errlen);
void profile_free(struct profile *p);

const struct event_spec *profile_event(const struct profile *p, const char *name);
/* An event of the "api" member, or NULL. */
const struct event_spec *profile_api_event(const struct profile *p, const char *name);
const char *action_name(enum action a);
/* The template of the fields the profile adds to the daemon's document at
 * path ("/", "/health" or "/stats"), or NULL. Borrowed. */
json_object *profile_document(const struct profile *p, const char *path);

struct config;
/* Applies the profile's "config" defaults to c: each key that no source
 * (file, environment, flag) set takes the profile's value. Returns 0, or
 * -1 with a message naming the profile's file in err. */
int profile_apply_config(const struct profile *p, struct config *c, char *err, size_t errlen);

#endif

/* tmpl.h -- JSON templates over a context object.
 *
 * A template is any JSON value. Strings are where substitution happens:
 *
 *   "{expr}"            the whole string is one expression: its value keeps
 *                       its JSON type (a number, an object, an array...)
 *   "user:{user.id}"    text with expressions: the result is a string
 *   "{{"                a literal brace
 *
 * An expression is alternatives separated by '|', the first that is defined
 * wins, optionally preceded by a conversion:
 *
 *   [conv:]operand[|operand...]
 *   operand: a path into the context (req.channelId, user.id, message; a
 *            number indexes an array: match.0), a
 *            quoted literal ('text'), a number, true, false, null, or one of
 *            the generators: uuid (random UUID v4), now.ms, now.s, now.iso
 *            (2026-01-06T12:00:00.000Z), now.iso_naive (2026-01-06T12:00:00.000000),
 *            now.iso_space (2026-01-06 12:00:00.000000, Python's str(datetime)),
 *            now.iso_us (2026-01-06T12:00:00.000000Z: Python's isoformat() + "Z")
 *   conv:    int (an integer, or a string of digits), str, bool, lower, upper,
 *            ms_iso (epoch ms -> ISO-8601 with Z), ms_iso_us (epoch ms -> as now.iso_us),
 *            len (length of a string or array)
 *
 * In an object, a member whose template is a single expression that is
 * undefined (missing in the context, no alternative) is left out, so optional
 * fields disappear instead of becoming null; an explicit null stays.
 *
 * Pure code: the context is read, never changed. */
#ifndef AEOLUS_TMPL_H
#define AEOLUS_TMPL_H

#include <json-c/json.h>

enum tmpl_err { TMPL_OK = 0, TMPL_UNDEFINED, TMPL_TYPE, TMPL_SYNTAX };

/* Evaluates tmpl over ctx. On TMPL_OK *out is a new reference (possibly
 * NULL for JSON null). On TMPL_TYPE (a conversion failed: e.g. int of "abc")
 * *what names the expression (static buffer, valid until the next call). */
enum tmpl_err tmpl_eval(json_object *tmpl, json_object *ctx, json_object **out,
                        const char **what);

/* Evaluates a template expected to give a string (a room name, an event
 * name). Returns a malloc'd string or NULL when undefined or not scalar. */
char *tmpl_string(json_object *tmpl, json_object *ctx);

/* Checks the syntax of every expression in tmpl. Returns 0, or -1 with a
 * description in err. */
int tmpl_check(json_object *tmpl, char *err, size_t errlen);

/* Looks up a dotted path ("req.channelId", "match.0": a number indexes an
 * array) in ctx; NULL when missing. Borrowed. */
json_object *tmpl_lookup(json_object *ctx, const char *path, size_t len);

/* Truthiness of a context value: defined, not null, not false, not 0, not "". */
int tmpl_truthy(json_object *v);

#endif

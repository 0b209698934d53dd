/* conformance.h -- the "conformance" profile: behaves like the reference
 * test servers of the official Engine.IO and Socket.IO protocol suites.
 *
 *   /engine.io/   raw Engine.IO: every message is echoed to its sender.
 *   <path>        Socket.IO: namespaces "/" and "/custom" accept everyone
 *                 and emit "auth" with the CONNECT payload; on "/",
 *                 "message" is answered with "message-back" and the same
 *                 arguments, "message-with-ack" is acked with them. */
#ifndef AEOLUS_CONFORMANCE_H
#define AEOLUS_CONFORMANCE_H

#include <event2/event.h>
#include "config.h"

int conformance_start(struct event_base *base, const struct config *cfg);

#endif

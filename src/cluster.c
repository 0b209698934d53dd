/* cluster.c -- see cluster.h. */
#include <string.h>

#include "cluster.h"
#include "log.h"

static struct {
	struct event_base *base;
	const struct config *cfg;
	int enabled;
	char instance[ID_LEN + 1];
} C;

int cluster_init(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	C.base = base;
	C.cfg = cfg;
	if (random_id(C.instance) < 0) {
		snprintf(err, errlen, "cannot draw an instance id");
		return -1;
	}
	C.enabled = cfg->redis_url && *cfg->redis_url;
	return 0;
}

void cluster_free(void)
{
	C.enabled = 0;
}

int cluster_enabled(void) { return C.enabled; }
const char *cluster_instance(void) { return C.instance; }

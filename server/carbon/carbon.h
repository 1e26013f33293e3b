/* carbon: casca.v1.CarbonService (EMMA), the `carbon:` config section, and the carbon-intensity
 * lookups other modules use. Figures come from the configured providers in order (bundled data
 * in the store, Electricity Maps, UK National Grid), energy mixes from factor sets (IPCC AR5 2014
 * lifecycle medians built in, more in config); every figure says where it came from.
 *
 * Config (all keys optional):
 *   carbon:
 *     default_zone: AT                   # zone for requests that leave it empty
 *     bundled_data: /path/to/data/carbon # default: the source tree's data/carbon (CASCA_DATA_DIR)
 *     estimate_from_nearest_year: false  # outside coverage: the same hour of the nearest covered
 *                                        # year, flagged estimated (else NOT_FOUND)
 *     default_factor_set: "IPCC AR5 2014 lifecycle medians"
 *     factor_sets:                       # more sets, e.g. direct-emission factors
 *       - {name: "my direct", basis: direct, sources: {coal: 1000, gas: {factor: 400, description:
 * "CCGT"}}} providers:                         # consulted in order; bundled is appended if not
 * listed
 *       - uk                             # or {name: uk, url: ..., ttl: 30m, timeout: 5s, zones:
 * [GB]}
 *       - {name: electricitymaps, token_env: ELECTRICITYMAPS_TOKEN, zones: [DE, FR]}
 *       - bundled */
#ifndef CASCA_CARBON_H
#define CASCA_CARBON_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "rpc.h"
#include "store.h"

struct carbon;

/* A figure with its provenance. provider points to a static string. */
struct carbon_figure {
    double gco2eq_per_kwh;
    const char *provider; /* "bundled", "import", "electricitymaps", "uk", or "a+b" when mixed */
    bool estimated;       /* estimated or forecast, not measured */
    bool forecast;
    bool direct;    /* direct emissions; lifecycle when false */
    char note[256]; /* why estimated / where from, "" when nothing to add */
};

/* Opens the carbon data in store, loads the bundled data of the live config's carbon section if
 * it changed since the last start (about 1 s the first time, a few stat calls later), and
 * registers CarbonService on srv (before rpc_server_start). live and store must outlive the
 * module. On failure returns a casca_err with the reason in err. Main thread. */
int carbon_create(struct rpc_server *srv, struct config_live *live, struct store *store,
                  struct carbon **out, char *err, size_t errlen);
/* After a reload swapped in cfg: loads bundled data from a changed bundled_data dir. Blocking
 * (file reads, store writes); any thread but one at a time (daemon_reload serialises). */
void carbon_reload(struct carbon *c, const struct config *cfg);
/* After rpc_server_destroy. Safe on NULL. */
void carbon_destroy(struct carbon *c);

/* For the SLO engine: the hourly intensity of zone ("" = the default zone) at time_ns (ns since
 * 1970, UTC), from the store only (bundled and imported data, and live providers' cached answers
 * even when stale): it never does network I/O, and takes a few microseconds (one LMDB lookup per
 * provider). Country codes resolve to their grid zones and, when the config enables it, the
 * nearest covered year stands in (out->estimated). CASCA_ERR_NOT_FOUND when nothing covers that
 * hour, CASCA_ERR_INVALID for a malformed zone. Any thread, no locks held on return. */
int carbon_intensity_at(struct carbon *c, const char *zone, int64_t time_ns,
                        struct carbon_figure *out);

/* The carbon clock's time for real_ns (this machine's clock): real_ns itself, or under
 * carbon.replay the replayed time (replay.h). speed (may be NULL) gets the replayed seconds per
 * real second (1 without a replay), note (may be NULL) "replayed: ..." or "". Any thread. */
int64_t carbon_replay_time(struct carbon *c, int64_t real_ns, double *speed, char *note,
                           size_t notelen);

/* The default zone of cfg's carbon section ("AT"); valid while cfg is. Any thread. */
const char *carbon_default_zone(const struct config *cfg);

/* The zones cfg's carbon section names: the default zone first, then the zones routed to
 * providers, each once; at most max into out (borrowed from cfg: valid while cfg is). Any
 * thread. */
size_t carbon_zones(const struct config *cfg, const char **out, size_t max);

/* The carbon section: its top-level key, and its descriptor for config_load. */
#define CARBON_CONFIG_KEYS "carbon"
extern const struct config_section carbon_config_section;

#endif

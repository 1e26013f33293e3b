/* sections: what cascad's configuration file holds beyond server:, auth: and store: (which
 * config.c reads itself): the feature sections, each declared by its feature. */
#ifndef CASCA_SECTIONS_H
#define CASCA_SECTIONS_H

#include "carbon.h"
#include "config.h"
#include "ctl.h"
#include "hooks.h"
#include "http_server.h"
#include "otlp.h"
#include "probe.h"
#include "slo.h"
#include "telemetry.h"

/* cascad's sections, in the order they are parsed and listed in errors (NULL-terminated; for
 * config_load). Defined in daemon.c. */
extern const struct config_section *const cascad_config_sections[];

/* The top-level keys of those sections, for the programs that read the same file but not every
 * section (casca-hook, casca-carbon-import): they pass a section with these keys and no parse,
 * so the keys are not errors there. config_test checks it against cascad_config_sections. */
#define CASCAD_CONFIG_KEYS                                                                       \
    CTL_CONFIG_KEYS, CARBON_CONFIG_KEYS, HOOKS_CONFIG_KEYS, PROBES_CONFIG_KEYS,                  \
        TELEMETRY_CONFIG_KEYS, SLO_CONFIG_KEYS, HTTP_CONFIG_KEYS, OTLP_CONFIG_KEYS

#endif

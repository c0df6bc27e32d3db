/*
 * cli.h — operator commands: checking and repairing the event history
 * (`vigil audit verify`, `vigil reconcile`, `vigil replay`) and running the
 * platform (`vigil import transactions`, `vigil status`, `vigil events tail`,
 * `vigil demo seed`).
 *
 * Each command takes the loaded configuration and the arguments that follow
 * its name (argv[0] is the first option, not the command), prints its report
 * on stdout, every failure on stderr, and returns the process exit code:
 *
 *   0  done, and the check passed
 *   1  the check failed (history tampered, stream still incomplete), or a
 *      configuration / internal error
 *   2  usage error
 *   3  PostgreSQL or NATS unavailable
 */
#ifndef VIGIL_CLI_CLI_H
#define VIGIL_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "util/config.h"
#include "util/status.h"

#define CLI_OK          0
#define CLI_FAILED      1
#define CLI_USAGE       2
#define CLI_UNAVAILABLE 3

/* vigil audit verify [--from-seq N] [--to-seq M] [--json]
 * Recomputes event_log's SHA-256 chain in C and names the first edited,
 * missing or reordered row; compares event_log's end with the publisher's
 * cursor and, when NATS answers, with the stream (truncation of the tail). */
int cli_audit_verify(const vg_config *cfg, int argc, char **argv);

/* vigil reconcile [--from-seq N] [--dry-run]
 * Reads the whole stream, reports which events of event_log it lacks (and
 * duplicates, out-of-order messages), re-publishes the missing ones and
 * re-reads the stream to prove it is complete. Closes the NATS library
 * (nats_CloseAndWait) before returning: call it last. */
int cli_reconcile(const vg_config *cfg, int argc, char **argv);

/* vigil replay --from-seq N [--to-seq M] [--type PREFIX] [--to stdout|nats]
 *              [--subject-prefix P]
 * Re-emits history in seq order: JSON Lines on stdout, or core NATS
 * publishes on P + event type (default "vigil.replay."). */
int cli_replay(const vg_config *cfg, int argc, char **argv);

/* vigil import transactions FILE [--format csv|jsonl] [--batch N]
 *              [--rejects PATH] [--progress SECONDS] [--quiet]
 * Bulk-loads transactions through vigil_ingest (src/cli/import.h); exit 1
 * when any record was rejected. */
int cli_import(const vg_config *cfg, int argc, char **argv);

/* vigil status [--json]
 * The pipeline at a glance: leaders, outbox, sequencer and publisher
 * positions, the JetStream stream and consumers, dead letters. Exit 3 when
 * PostgreSQL is unreachable; NATS unreachable is reported, not fatal. */
int cli_status(const vg_config *cfg, int argc, char **argv);

/* vigil events tail [--type PREFIX] [--after SEQ] [--follow] [--limit N]
 * Prints event_log's CloudEvents as JSON Lines in seq order. */
int cli_events_tail(const vg_config *cfg, int argc, char **argv);

/* vigil demo seed [--customers N] [--days D] [--seed S]
 * Realistic demo customers and transactions that fire every built-in rule,
 * loaded through the importer. */
int cli_demo_seed(const vg_config *cfg, int argc, char **argv);

/* ---- shared by the files in src/cli/ ------------------------------------ */

/* Parses a positive seq given to option `opt` of command `cmd` into *out.
 * Returns 0, or prints a usage error on stderr and returns -1. */
int cli_parse_seq(const char *cmd, const char *opt, const char *value, int64_t *out);

/* Prints "vigil CMD: MSG ARG" and then "usage: USAGE" on stderr (arg may be
 * NULL) and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *usage, const char *msg, const char *arg);

/* Prints "vigil CMD: <field>: <detail>" on stderr and returns the exit code
 * for err->code (CLI_UNAVAILABLE or CLI_FAILED). */
int cli_fail(const char *cmd, const vg_error *err);

/* Milliseconds on a monotonic clock, for the timings the commands print. */
int64_t cli_now_ms(void);

/* Writes n bytes as 2n lowercase hex digits plus a NUL into out. */
void cli_hex(const unsigned char *bytes, size_t n, char *out);

#endif

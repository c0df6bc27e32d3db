/*
 * cli_replay.c — `vigil replay`: re-emit a range of history, in seq order,
 * for a rebuilder (a new read model, a data warehouse, a fixed consumer).
 *
 * Rows come from event_log in pages by seq (constant memory). The range
 * ends at --to-seq, or at the log's last seq when the replay starts, so a
 * replay always finishes even while new events keep arriving.
 *
 *   --to stdout  one CloudEvent per line (JSON Lines), exactly the stored
 *                envelope, "seq" included.
 *   --to nats    a core NATS publish per event (not JetStream: a replay must
 *                never add copies to AML_EVENTS) on subject
 *                PREFIX + event type, default "vigil.replay.", so a
 *                rebuilder subscribes to vigil.replay.aml.> (or a narrower
 *                subject) and the stream, whose subjects are aml.>, never
 *                sees it. Headers: Vigil-Seq and Nats-Msg-Id = event id, so
 *                the receiver can drop what it already applied. Core NATS
 *                is at-most-once: subscribe before starting the replay, and
 *                re-run the range if the receiver fell behind.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/stream.h"
#include "store/db.h"
#include "store/store_event_log.h"

#define REPLAY_CMD      "replay"
#define REPLAY_PAGE     5000
#define REPLAY_PREFIX   "vigil.replay."
#define REPLAY_FLUSH_MS 10000

typedef struct replay {
    const vg_config *cfg;
    int64_t from, to;
    const char *type; /* event type prefix, or NULL */
    const char *prefix;
    natsConnection *nc; /* NULL: stdout */
    int64_t count, first, last;
} replay;

/* Publishes one row (seq, event_type, payload) of r on PREFIX + type. */
static vg_status publish_row(replay *p, PGresult *r, int i, vg_error *err)
{
    const char *seq = PQgetvalue(r, i, 0), *payload = PQgetvalue(r, i, 2);
    int len = PQgetlength(r, i, 2);
    /* The event id is the envelope's "id" (event_log.event_id by construction). */
    json_t *j = json_loadb(payload, (size_t)len, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "id"));
    char subject[512];
    natsMsg *m = NULL;
    natsStatus s = NATS_OK;
    if (!id) {
        json_decref(j);
        return vg_fail(err, VG_E_INTERNAL, NULL, "event seq %s has no \"id\" in its payload", seq);
    }
    if ((size_t)snprintf(subject, sizeof subject, "%s%s", p->prefix, PQgetvalue(r, i, 1)) >=
        sizeof subject) {
        json_decref(j);
        return vg_fail(err, VG_E_MALFORMED, "--subject-prefix", "subject too long for seq %s", seq);
    }
    s = stream_event_msg(&m, subject, seq, payload, len, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, HDR_MSG_ID, id);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(p->nc, m);
    natsMsg_Destroy(m);
    json_decref(j);
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL", "publishing seq %s failed: %s", seq,
                       natsStatus_GetText(s));
    return VG_OK;
}

/* Writes one page to stdout or NATS. */
static vg_status emit(replay *p, PGresult *r, vg_error *err)
{
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        if (p->nc) {
            vg_status st = publish_row(p, r, i, err);
            if (st != VG_OK)
                return st;
        } else if (fwrite(PQgetvalue(r, i, 2), 1, (size_t)PQgetlength(r, i, 2), stdout) !=
                       (size_t)PQgetlength(r, i, 2) ||
                   putchar('\n') == EOF) {
            return vg_fail(err, VG_E_IO, "stdout", "cannot write seq %s", PQgetvalue(r, i, 0));
        }
        p->last = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        if (!p->first)
            p->first = p->last;
        p->count++;
    }
    /* Bounds the client's buffer, and surfaces a lost connection per page
     * rather than at the end. */
    natsStatus s = p->nc && n ? natsConnection_FlushTimeout(p->nc, REPLAY_FLUSH_MS) : NATS_OK;
    if (s != NATS_OK)
        return vg_fail(err, VG_E_UNAVAILABLE, "VIGIL_NATS_URL",
                       "NATS did not confirm the events through seq %" PRId64 ": %s", p->last,
                       natsStatus_GetText(s));
    return VG_OK;
}

/* Walks [from, to] in windows of REPLAY_PAGE seqs: a window holds at most
 * that many rows (fewer with --type), and bounding it by seq keeps a fresh,
 * not yet analyzed event_log from being sorted whole for every page. */
static vg_status run(replay *p, PGconn *c, vg_error *err)
{
    if (!p->to) {
        vg_status st = event_log_head(c, &p->to, err);
        if (st != VG_OK)
            return st;
    }
    for (int64_t after = p->from - 1; after < p->to; after += REPLAY_PAGE) {
        int64_t before = p->to - after < REPLAY_PAGE ? p->to + 1 : after + REPLAY_PAGE + 1;
        PGresult *r = event_log_scan(c, after, before, p->type, REPLAY_PAGE, err);
        if (!r)
            return err->code;
        vg_status st = emit(p, r, err);
        PQclear(r);
        if (st != VG_OK)
            return st;
    }
    if (!p->nc && fflush(stdout) != 0)
        return vg_fail(err, VG_E_IO, "stdout", "cannot write the replay");
    return VG_OK;
}

static int usage(FILE *f)
{
    fprintf(f,
            "usage: vigil replay --from-seq N [--to-seq M] [--type PREFIX] [--to stdout|nats]\n"
            "                    [--subject-prefix P]\n"
            "  Re-emits events N..M (default: to the current end) in seq order, only those\n"
            "  whose type starts with PREFIX when given. stdout: one CloudEvent per line.\n"
            "  nats: core NATS publish on P + type (default P: %s; never on the\n"
            "  stream's aml.> subjects) with headers Vigil-Seq and Nats-Msg-Id.\n"
            "  The count goes to stderr. Exit 0 done, 1 failed, 2 usage, 3 unavailable.\n",
            REPLAY_PREFIX);
    return f == stdout ? CLI_OK : CLI_USAGE;
}

/* Parses the options into p; returns -1 (usage printed) when they are bad,
 * 1 for --help, 0 to go on. */
static int parse(replay *p, int argc, char **argv, int *to_nats)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (!v) {
            fprintf(stderr, "vigil %s: '%s' needs a value or is unknown\n", REPLAY_CMD, a);
            return -1;
        }
        i++;
        if (strcmp(a, "--from-seq") == 0 || strcmp(a, "--to-seq") == 0) {
            if (cli_parse_seq(REPLAY_CMD, a, v, a[2] == 'f' ? &p->from : &p->to) != 0)
                return -1;
        } else if (strcmp(a, "--type") == 0) {
            p->type = v;
        } else if (strcmp(a, "--subject-prefix") == 0) {
            p->prefix = v;
        } else if (strcmp(a, "--to") == 0 && (strcmp(v, "stdout") == 0 || strcmp(v, "nats") == 0)) {
            *to_nats = v[0] == 'n';
        } else {
            fprintf(stderr, "vigil %s: unexpected argument '%s %s'\n", REPLAY_CMD, a, v);
            return -1;
        }
    }
    if (!p->from) {
        fprintf(stderr, "vigil %s: --from-seq is required\n", REPLAY_CMD);
        return -1;
    }
    if (p->to && p->to < p->from) {
        fprintf(stderr, "vigil %s: --to-seq %" PRId64 " is before --from-seq %" PRId64 "\n",
                REPLAY_CMD, p->to, p->from);
        return -1;
    }
    /* A subject under aml. would land in the stream and duplicate history. */
    if (!*p->prefix || strncmp(p->prefix, "aml.", 4) == 0 || strchr(p->prefix, ' ') ||
        strchr(p->prefix, '*') || strchr(p->prefix, '>')) {
        fprintf(stderr,
                "vigil %s: --subject-prefix '%s' is not allowed (empty, wildcard, or under "
                "aml., the stream's subjects)\n",
                REPLAY_CMD, p->prefix);
        return -1;
    }
    return 0;
}

int cli_replay(const vg_config *cfg, int argc, char **argv)
{
    replay p = {.cfg = cfg, .prefix = REPLAY_PREFIX};
    int to_nats = 0, rc = CLI_FAILED;
    jsCtx *js = NULL;
    PGconn *c = NULL;
    vg_error err = {0};
    int parsed = parse(&p, argc, argv, &to_nats);
    if (parsed != 0)
        return usage(parsed > 0 ? stdout : stderr);
    if (!(c = db_connect(cfg->database_url, (int)cfg->db_connect_timeout, &err)) ||
        (to_nats &&
         stream_connect(cfg, "vigil-replay", 0, NULL, NULL, &p.nc, &js, &err) != VG_OK) ||
        run(&p, c, &err) != VG_OK) {
        rc = cli_fail(REPLAY_CMD, &err);
        if (p.count)
            fprintf(stderr,
                    "vigil %s: %" PRId64 " events were emitted before the failure (seqs %" PRId64
                    "..%" PRId64 ")\n",
                    REPLAY_CMD, p.count, p.first, p.last);
        goto end;
    }
    if (p.count)
        fprintf(stderr, "replayed %" PRId64 " events (seqs %" PRId64 "..%" PRId64 ") to %s\n",
                p.count, p.first, p.last, to_nats ? "nats" : "stdout");
    else
        fprintf(stderr, "replayed 0 events: none in seqs %" PRId64 "..%" PRId64 "%s%s\n", p.from,
                p.to, p.type ? " of type " : "", p.type ? p.type : "");
    rc = CLI_OK;
end:
    jsCtx_Destroy(js);
    natsConnection_Destroy(p.nc);
    PQfinish(c);
    vg_error_clear(&err);
    return rc;
}

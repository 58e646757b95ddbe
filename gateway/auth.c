/*
 * SASL on a connection: the XML around gateway/sasl.c's state machine, the
 * asynchronous credential fetch (OP_JOB cred_get through the router; the
 * loop never blocks) and the slow-down after failures.
 *
 * Rules (RFC 6120 §6.4), cited where applied:
 *   A1  mechanisms only when stream_may_auth(); PLAIN only over TLS
 *   A2  data is base64; "=" is an empty response (§6.4.2); bad base64 is
 *       <incorrect-encoding/>
 *   A3  each failure is answered after auth_fail_delay_ms times the number
 *       of failures so far (reading pauses meanwhile); after
 *       max_auth_failures the stream is closed with policy-violation
 *       (§6.4.5 allows a configurable number of retries)
 *   A4  on success the stream restarts (§6.4.6) and the SASL state is wiped
 *   A5  with sessions.device_classes configured, a login name "P#local"
 *       whose prefix P is a configured class authenticates as local; the
 *       class decides the resource at bind time (bind.c). SCRAM signs the
 *       whole name as sent, so the prefix stays in the proof.
 */
#include "auth.h"
#include "base64.h"
#include "conn.h"
#include "envelope.h"
#include "jid.h"
#include "log.h"
#include "sasl.h"
#include "scram.h"
#include "stanza.h"
#include "stream.h"
#include "upstream.h"
#include "util.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

static void on_delay(struct ev_loop *loop, ev_timer *w, int revents);

void auth_fini(struct conn *c)
{
    sasl_free(c->sasl);
    c->sasl = NULL;
    if (c->gw && c->delay.data)
        ev_timer_stop(c->gw->loop, &c->delay);
}

static void send_element(struct conn *c, const char *name, const unsigned char *data, size_t len)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "<%s xmlns='" NS_SASL "'", name);
    if (data) {
        char *enc = base64_encode(data, len);
        /* An empty payload is sent as "=" (§6.4.2, §6.4.6). */
        buf_printf(&b, ">%s</%s>", len ? enc : "=", name);
        free(enc);
    } else {
        buf_append_str(&b, "/>");
    }
    conn_write(c, b.data, b.len);
    buf_fini(&b);
}

static void send_failure_now(struct conn *c, const char *condition)
{
    struct buf b;
    buf_init(&b);
    buf_printf(&b, "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
    conn_write(c, b.data, b.len);
    buf_fini(&b);
}

/* Ends the exchange with a failure; A3 for credential failures. */
static void fail(struct conn *c, const char *condition)
{
    const struct config_gateway *g = &c->gw->conf->gateway;

    sasl_free(c->sasl);
    c->sasl = NULL;
    free(c->pending_job);
    c->pending_job = NULL;
    if (strcmp(condition, "not-authorized") != 0) {
        send_failure_now(c, condition);
        if (c->is_waiting)
            conn_resume(c);
        return;
    }
    c->auth_failures++;
    log_info("conn=%llu authentication failed (%d of %d)", (unsigned long long)c->id, c->auth_failures,
             g->max_auth_failures);
    if (!c->is_waiting)
        conn_wait(c);
    ev_timer_init(&c->delay, on_delay, g->auth_fail_delay_ms / 1000.0 * c->auth_failures, 0.0);
    c->delay.data = c;
    ev_timer_start(c->gw->loop, &c->delay);
}

static void on_delay(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct conn *c = w->data;

    if (c->state == CONN_CLOSING)
        return;
    send_failure_now(c, "not-authorized");
    if (c->auth_failures >= c->gw->conf->gateway.max_auth_failures) {
        conn_close(c, "policy-violation", "too many authentication failures", "error");
        return;
    }
    conn_resume(c);
}

static void succeed(struct conn *c, const unsigned char *extra, size_t len)
{
    send_element(c, "success", extra, len);
    sasl_free(c->sasl);
    c->sasl = NULL;
    c->state = CONN_AUTHED;
    log_info("conn=%llu user=%s authenticated%s%s", (unsigned long long)c->id, c->user_id,
             c->device_class ? " class=" : "", c->device_class ? c->device_class->name : "");
    stream_restart(c);                                                      /* A4 */
}

/* Maps a sasl.c result to what goes on the wire. */
static void handle_rc(struct conn *c, int rc, unsigned char *out, size_t out_len)
{
    switch (rc) {
    case SASL_CONTINUE:
        send_element(c, "challenge", out, out_len);
        break;
    case SASL_OK:
        succeed(c, out, out_len);
        break;
    case SASL_NEED_CREDS:
        break; /* handled by the caller */
    case SASL_ERR_MALFORMED:
        fail(c, "malformed-request");
        break;
    case SASL_ERR_INVALID_AUTHZID:
        fail(c, "invalid-authzid");
        break;
    case SASL_ERR_ENCRYPTION_REQUIRED:
        fail(c, "encryption-required");
        break;
    case SASL_ERR_TEMPORARY:
        fail(c, "temporary-auth-failure");
        break;
    default:
        fail(c, "not-authorized");
    }
    free(out);
}

/* The username is known: ask storage for its keys, holding the stream. */
static void fetch_creds(struct conn *c)
{
    const char *authcid = sasl_authcid(c->sasl);
    const char *hash = strchr(authcid, '#');
    const struct config_device_class *dc = NULL;
    char *local = NULL;

    /* A5: "1#alice" logs in as alice from device class "1". */
    if (hash && c->gw->conf->sessions.ndevice_classes) {
        dc = config_device_class(c->gw->conf, authcid, (size_t)(hash - authcid));
        if (dc)
            authcid = hash + 1;
    }
    c->device_class = dc;
    if (jid_nodeprep(authcid, &local) != JID_OK) {
        fail(c, "not-authorized");
        return;
    }
    free(c->user_id);
    c->user_id = xasprintf("%s@%s", local, c->gw->conf->domain);
    free(local);
    free(c->pending_job);
    c->is_request_sent = c->gw->up.is_connected;
    c->pending_job = upstream_request_creds(c->gw, c->id, c->user_id);
    conn_wait(c);
}

/* A2: decodes the element's text; NULL data with rc -1 when invalid. */
static int decode_text(const struct stanza *s, unsigned char **data, size_t *len)
{
    char *text = stanza_text(s);
    int rc = 0;

    *data = NULL;
    *len = 0;
    if (strcmp(text, "=") == 0 || text[0] == '\0') {
        *data = (unsigned char *)xstrdup("");
    } else if (base64_decode(text, strlen(text), data, len) != 0) {
        rc = -1;
    }
    free(text);
    return rc;
}

static void on_auth(struct conn *c, struct stanza *s)
{
    enum sasl_mech mech;
    unsigned char *in = NULL, *out = NULL;
    size_t in_len = 0, out_len = 0;
    int rc;

    if (c->sasl || c->pending_job) {
        fail(c, "aborted");
        return;
    }
    if (!stream_may_auth(c)) {                                              /* A1 */
        send_failure_now(c, "encryption-required");
        return;
    }
    if (!stanza_attr(s, "mechanism") || sasl_mech_from_name(stanza_attr(s, "mechanism"), &mech) < 0 ||
        (mech == SASL_PLAIN && !stream_has_tls(c))) {
        send_failure_now(c, "invalid-mechanism");
        return;
    }
    if (decode_text(s, &in, &in_len) < 0) {
        send_failure_now(c, "incorrect-encoding");                          /* A2 */
        return;
    }
    c->sasl = sasl_new(mech, stream_has_tls(c));
    c->sasl_mech = mech;
    sasl_set_domain(c->sasl, c->gw->conf->domain);
    rc = sasl_start(c->sasl, in, in_len, &out, &out_len);
    free(in);
    if (rc == SASL_NEED_CREDS)
        fetch_creds(c);
    handle_rc(c, rc, out, out_len);
}

static void on_response(struct conn *c, struct stanza *s)
{
    unsigned char *in = NULL, *out = NULL;
    size_t in_len = 0, out_len = 0;
    int rc;

    if (!c->sasl || c->pending_job) {
        send_failure_now(c, "malformed-request");
        return;
    }
    if (decode_text(s, &in, &in_len) < 0) {
        fail(c, "incorrect-encoding");
        return;
    }
    rc = sasl_step(c->sasl, in, in_len, &out, &out_len);
    free(in);
    if (rc == SASL_NEED_CREDS)
        fetch_creds(c);
    handle_rc(c, rc, out, out_len);
}

void auth_on_element(struct conn *c, struct stanza *s)
{
    if (str_eq(s->name, "auth"))
        on_auth(c, s);
    else if (str_eq(s->name, "response"))
        on_response(c, s);
    else if (str_eq(s->name, "abort"))
        fail(c, "aborted");
    else
        conn_close(c, "unsupported-stanza-type", NULL, "error");
    stanza_free(s);
}

void auth_on_creds(struct conn *c, const struct envelope *res)
{
    const char *err = envelope_get(res, ENV_ERROR);
    struct scram_cred cred;
    const struct scram_cred *use = NULL;
    unsigned char *out = NULL;
    size_t out_len = 0;
    int rc;

    if (!c->pending_job || !str_eq(envelope_get(res, ENV_JOB), c->pending_job) || !c->sasl)
        return; /* an answer for an exchange that already ended */
    free(c->pending_job);
    c->pending_job = NULL;
    if (err && strcmp(err, "not-found") != 0) {
        log_warn("conn=%llu user=%s credentials unavailable: %s", (unsigned long long)c->id, c->user_id, err);
        fail(c, "temporary-auth-failure");
        return;
    }
    if (!err) {
        enum scram_hash h = sasl_cred_hash(c->sasl_mech);
        const char *enc = envelope_get(res, h == SCRAM_SHA1 ? ENV_CRED_SHA1 : ENV_CRED_SHA256);
        if (!enc || scram_cred_decode(h, enc, &cred) != 0) {
            log_warn("conn=%llu user=%s stored %s credentials unusable", (unsigned long long)c->id, c->user_id,
                     scram_hash_name(h));
            fail(c, "temporary-auth-failure");
            return;
        }
        use = &cred;
    }
    /* An unknown user (use == NULL) goes on with fake keys and fails at the
     * proof, so the answer does not tell who exists (sasl.h). */
    rc = sasl_set_creds(c->sasl, use, &out, &out_len);
    OPENSSL_cleanse(&cred, sizeof(cred));
    handle_rc(c, rc, out, out_len);
    if ((rc == SASL_CONTINUE || rc == SASL_OK) && c->is_waiting)
        conn_resume(c);
}

/*
 * Stream negotiation; see login.h. One handler per step, each taking the
 * stanza that step waits for. Steps:
 *   FEATURES  waiting for <stream:features> (before and after TLS)
 *   PROCEED   <starttls/> sent
 *   SASL      <auth/> sent (SCRAM: also the response)
 *   BOUND_FEATURES  restarted after SASL success, waiting for features
 *   BIND, SESSION, ROSTER  iq sent, waiting for its result
 *   SYNC      presence and the barrier ping sent
 * Anything else that arrives once bound (a message, a server iq, presence)
 * goes to traffic.c, which also handles everything after SYNC.
 */
#include "login.h"
#include "base64.h"
#include "client.h"
#include "stanza.h"
#include "traffic.h"
#include "util.h"
#include "xml.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"

enum step { S_FEATURES, S_PROCEED, S_SASL, S_BOUND_FEATURES, S_BIND, S_SESSION, S_ROSTER, S_SYNC };

static void on_open(void *ud, struct stanza *hdr);
static void on_stanza(void *ud, struct stanza *s);
static void on_close(void *ud);

void login_jid(const struct worker *w, uint32_t account, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s%ld@%s", w->o->prefix, w->o->first + (long)account, w->o->domain);
}

static void send_header(struct client *c)
{
    char hdr[512];
    snprintf(hdr, sizeof(hdr),
             "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
             "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>",
             c->w->o->domain);
    client_send_str(c, hdr);
}

void login_connected(struct client *c)
{
    static const struct xml_callbacks cb = { on_open, on_stanza, on_close };
    c->xml = xml_new(NULL, &cb, c);
    c->step = S_FEATURES;
    if (c->w->o->tls == TLS_DIRECT) {
        client_start_tls(c);
        return;
    }
    send_header(c);
}

void login_tls_done(struct client *c)
{
    c->step = S_FEATURES;
    send_header(c);
}

static void on_open(void *ud, struct stanza *hdr)
{
    (void)ud;
    stanza_free(hdr);
}

static void on_close(void *ud)
{
    struct client *c = ud;
    client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_STREAM);
}

static int has_mechanism(const struct stanza *mechs, const char *name)
{
    for (const struct stanza *m = mechs ? mechs->first : NULL; m; m = m->next) {
        if (m->kind == STANZA_ELEMENT && str_eq(m->name, "mechanism")) {
            char *t = stanza_text(m);
            int eq = strcmp(t, name) == 0;
            free(t);
            if (eq)
                return 1;
        }
    }
    return 0;
}

static void send_sasl(struct client *c, const char *element, const char *mech, const char *payload)
{
    char *b64 = base64_encode((const unsigned char *)payload, strlen(payload));
    char *x = mech ? xasprintf("<%s xmlns='" NS_SASL "' mechanism='%s'>%s</%s>", element, mech, b64, element)
                   : xasprintf("<%s xmlns='" NS_SASL "'>%s</%s>", element, b64, element);
    client_send_str(c, x);
    free(x);
    free(b64);
}

static void start_auth(struct client *c, const struct stanza *mechs)
{
    const struct bench_opts *o = c->w->o;
    static const char *const names[] = { "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN" };
    const char *mech = names[o->sasl];
    char user[128];

    if (!has_mechanism(mechs, mech)) {
        client_fail(c, FAIL_AUTH);
        return;
    }
    snprintf(user, sizeof(user), "%s%ld", o->prefix, o->first + (long)c->account);
    c->step = S_SASL;
    if (o->sasl == SASL_PLAIN) {
        /* RFC 4616: authzid NUL authcid NUL password; base64 handles the NULs. */
        size_t ul = strlen(user), pl = strlen(o->password);
        unsigned char *msg = xmalloc(ul + pl + 2);
        msg[0] = '\0';
        memcpy(msg + 1, user, ul);
        msg[1 + ul] = '\0';
        memcpy(msg + 2 + ul, o->password, pl);
        char *b64 = base64_encode(msg, ul + pl + 2);
        char *x = xasprintf("<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", b64);
        client_send_str(c, x);
        free(x);
        free(b64);
        free(msg);
        return;
    }
    char nonce[40];
    uint64_t a = worker_rand(c->w), b = worker_rand(c->w);
    snprintf(nonce, sizeof(nonce), "%016" PRIx64 "%016" PRIx64, a, b);
    c->scram = xcalloc(1, sizeof(*c->scram));
    char *first = scram_client_first(c->scram, o->sasl == SASL_SCRAM_SHA1 ? SCRAM_SHA1 : SCRAM_SHA256, user, nonce);
    send_sasl(c, "auth", mech, first);
    free(first);
}

static void on_features(struct client *c, struct stanza *s)
{
    const struct bench_opts *o = c->w->o;
    struct stanza *tls = stanza_child(s, "starttls", NS_TLS);

    if (!c->is_tls && o->tls == TLS_STARTTLS) {
        if (!tls) {
            client_fail(c, FAIL_PROTOCOL);
            return;
        }
        c->step = S_PROCEED;
        client_send_str(c, "<starttls xmlns='" NS_TLS "'/>");
        return;
    }
    start_auth(c, stanza_child(s, "mechanisms", NS_SASL));
}

/* Decodes the base64 text of s into a NUL-terminated string (caller frees), or NULL. */
static char *sasl_text(const struct stanza *s)
{
    char *t = stanza_text(s);
    unsigned char *raw = NULL;
    size_t len = 0;
    int rc = base64_decode(t, strlen(t), &raw, &len);
    free(t);
    if (rc < 0 || memchr(raw, '\0', len)) {
        free(raw);
        return NULL;
    }
    return (char *)raw;
}

static void restart_stream(struct client *c)
{
    if (c->scram) {
        scram_client_fini(c->scram);
        free(c->scram);
        c->scram = NULL;
    }
    xml_restart(c->xml);
    c->step = S_BOUND_FEATURES;
    send_header(c);
}

static void on_sasl(struct client *c, struct stanza *s)
{
    if (!str_eq(s->ns, NS_SASL) || str_eq(s->name, "failure")) {
        client_fail(c, FAIL_AUTH);
        return;
    }
    char *msg = sasl_text(s);
    if (!msg) {
        client_fail(c, FAIL_AUTH);
        return;
    }
    if (str_eq(s->name, "challenge") && c->scram && !c->scram->has_final) {
        char *final = NULL;
        if (scram_client_final(c->scram, msg, c->w->o->password, &c->w->keycache, &final) < 0) {
            client_fail(c, FAIL_AUTH);
        } else {
            send_sasl(c, "response", NULL, final);
            free(final);
        }
    } else if (str_eq(s->name, "challenge") && c->scram) {
        /* Server signature in a last challenge (RFC 6120 §6.4.6 allows it): empty response. */
        if (scram_client_verify(c->scram, msg) < 0)
            client_fail(c, FAIL_AUTH);
        else
            client_send_str(c, "<response xmlns='" NS_SASL "'/>");
    } else if (str_eq(s->name, "success")) {
        if (c->scram && *msg && scram_client_verify(c->scram, msg) < 0)
            client_fail(c, FAIL_AUTH);
        else if (c->scram && !*msg && !c->scram->has_final)
            client_fail(c, FAIL_AUTH);
        else
            restart_stream(c);
    } else {
        client_fail(c, FAIL_PROTOCOL);
    }
    free(msg);
}

static void send_iq(struct client *c, const char *id, const char *type, const char *to, const char *child)
{
    char buf[LOGIN_JID_MAX + 512];
    if (to)
        snprintf(buf, sizeof(buf), "<iq type='%s' id='%s' to='%s'>%s</iq>", type, id, to, child);
    else
        snprintf(buf, sizeof(buf), "<iq type='%s' id='%s'>%s</iq>", type, id, child);
    client_send_str(c, buf);
}

static int is_reply(const struct stanza *s, const char *id)
{
    const char *type = stanza_attr(s, "type");
    return str_eq(s->name, "iq") && str_eq(stanza_attr(s, "id"), id) &&
           (str_eq(type, "result") || str_eq(type, "error"));
}

static void go_roster(struct client *c)
{
    c->step = S_ROSTER;
    send_iq(c, "roster", "get", NULL, "<query xmlns='jabber:iq:roster'/>");
}

static void go_sync(struct client *c)
{
    char jid[LOGIN_JID_MAX];
    login_jid(c->w, c->account, jid, sizeof(jid));
    c->step = S_SYNC;
    client_send_str(c, "<presence/>");
    send_iq(c, "sync", "get", jid, "<ping xmlns='urn:xmpp:ping'/>");
}

static void on_bound_features(struct client *c, struct stanza *s)
{
    if (!stanza_child(s, "bind", NS_BIND)) {
        client_fail(c, FAIL_BIND);
        return;
    }
    struct stanza *sess = stanza_child(s, "session", NS_SESSION);
    c->step = S_BIND;
    /* A session feature without <optional/> must be negotiated (RFC 3921 §3);
     * remember it in the step after bind. */
    c->needs_session = sess && !stanza_child(sess, "optional", NULL);
    send_iq(c, "bind", "set", NULL, "<bind xmlns='" NS_BIND "'><resource>bench</resource></bind>");
}

/* Steps from bind on: our iq replies advance; everything else is traffic. */
static int on_bound(struct client *c, struct stanza *s)
{
    switch (c->step) {
    case S_BIND:
        if (!is_reply(s, "bind"))
            return 0;
        if (!str_eq(stanza_attr(s, "type"), "result")) {
            client_fail(c, FAIL_BIND);
        } else if (c->needs_session) {
            c->step = S_SESSION;
            send_iq(c, "sess", "set", NULL, "<session xmlns='" NS_SESSION "'/>");
        } else {
            go_roster(c);
        }
        return 1;
    case S_SESSION:
        if (!is_reply(s, "sess"))
            return 0;
        if (!str_eq(stanza_attr(s, "type"), "result"))
            client_fail(c, FAIL_BIND);
        else
            go_roster(c);
        return 1;
    case S_ROSTER:
        if (!is_reply(s, "roster"))
            return 0;
        go_sync(c);   /* an error here only means no roster: go on */
        return 1;
    case S_SYNC:
        if (!is_reply(s, "sync"))
            return 0;
        worker_on_online(c->w, c);
        return 1;
    }
    return 0;
}

static void on_stanza(void *ud, struct stanza *s)
{
    struct client *c = ud;

    if (c->want_close) {
        stanza_free(s);
        return;
    }
    if (str_eq(s->name, "error") && str_eq(s->ns, XML_NS_STREAMS)) {
        client_fail(c, c->state == CLIENT_ONLINE ? FAIL_DROPPED : FAIL_STREAM);
        stanza_free(s);
        return;
    }
    if (c->state == CLIENT_ONLINE) {
        traffic_stanza(c, s);
        return;
    }
    int is_features = str_eq(s->name, "features") && str_eq(s->ns, XML_NS_STREAMS);
    switch (c->step) {
    case S_FEATURES:
        if (is_features)
            on_features(c, s);
        else
            client_fail(c, FAIL_PROTOCOL);
        break;
    case S_PROCEED:
        if (str_eq(s->name, "proceed") && str_eq(s->ns, NS_TLS)) {
            xml_restart(c->xml);
            c->restart_tls = 1;   /* client.c starts TLS once this read is parsed */
        } else {
            client_fail(c, FAIL_TLS);
        }
        break;
    case S_SASL:
        on_sasl(c, s);
        break;
    case S_BOUND_FEATURES:
        if (is_features)
            on_bound_features(c, s);
        else
            client_fail(c, FAIL_PROTOCOL);
        break;
    default:
        if (!on_bound(c, s)) {
            traffic_stanza(c, s);   /* takes s */
            return;
        }
        break;
    }
    stanza_free(s);
}

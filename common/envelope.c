/*
 * Envelope encoding (yajl) and ZeroMQ framing. The only file that touches
 * JSON between processes (STYLE.md "The envelope between processes"); the
 * contract itself is documented in envelope.h.
 *
 * Decoding uses yajl's event parser straight into the fixed field arrays, so
 * a header costs one pass and one allocation per present string; no
 * intermediate tree is built on the message path.
 */
#include "envelope.h"
#include "buf.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <zmq.h>

static const char *const op_names[OP_COUNT] = {
    [OP_NONE] = "none",
    [OP_HELLO] = "hello",
    [OP_HEARTBEAT] = "heartbeat",
    [OP_UNKNOWN_PEER] = "unknown_peer",
    [OP_BIND] = "bind",
    [OP_BIND_RESULT] = "bind_result",
    [OP_ANNOUNCE] = "announce",
    [OP_CLOSED] = "closed",
    [OP_KICK] = "kick",
    [OP_STANZA] = "stanza",
    [OP_DELIVER] = "deliver",
    [OP_ACKED] = "acked",
    [OP_UNDELIVERED] = "undelivered",
    [OP_JOB] = "job",
    [OP_JOB_RESULT] = "job_result",
    [OP_ADMIN] = "admin",
    [OP_ADMIN_RESULT] = "admin_result",
};

static const char *const str_names[ENV_STR_COUNT] = {
    [ENV_NAME] = "name",
    [ENV_ROLE] = "role",
    [ENV_ID] = "id",
    [ENV_FULL] = "full",
    [ENV_USER] = "user",
    [ENV_ERROR] = "error",
    [ENV_REASON] = "reason",
    [ENV_FROM] = "from",
    [ENV_TO] = "to",
    [ENV_KIND] = "kind",
    [ENV_TYPE] = "type",
    [ENV_NS] = "ns",
    [ENV_WHAT] = "what",
    [ENV_JOB] = "job",
    [ENV_CMD] = "cmd",
    [ENV_TEXT] = "text",
    [ENV_CRED_SHA1] = "cred_sha1",
    [ENV_CRED_SHA256] = "cred_sha256",
    [ENV_CLASS] = "class",
    [ENV_JID] = "jid",
    [ENV_VER] = "ver",
    [ENV_ACK] = "ack",
};

static const char *const int_names[ENV_INT_COUNT] = {
    [ENV_CONN] = "conn",
    [ENV_PID] = "pid",
    [ENV_PRIO] = "prio",
    [ENV_AVAIL] = "avail",
    [ENV_SINCE] = "since",
    [ENV_FLAGS] = "flags",
    [ENV_LIMIT] = "limit",
    [ENV_STAMP] = "stamp",
};

struct envelope *envelope_new(enum envelope_op op)
{
    struct envelope *e = xcalloc(1, sizeof(*e));
    e->op = op;
    return e;
}

void envelope_free(struct envelope *e)
{
    if (!e)
        return;
    for (int i = 0; i < ENV_STR_COUNT; i++)
        free(e->str[i]);
    free(e->payload);
    free(e);
}

struct envelope *envelope_copy(const struct envelope *e)
{
    struct envelope *c = envelope_new(e->op);
    for (int i = 0; i < ENV_STR_COUNT; i++)
        c->str[i] = xstrdup(e->str[i]);
    memcpy(c->num, e->num, sizeof(c->num));
    c->has_num = e->has_num;
    if (e->payload)
        envelope_set_payload(c, e->payload, e->payload_len);
    return c;
}

void envelope_set(struct envelope *e, enum envelope_str f, const char *val)
{
    free(e->str[f]);
    e->str[f] = xstrdup(val);
}

const char *envelope_get(const struct envelope *e, enum envelope_str f)
{
    return e->str[f];
}

void envelope_set_int(struct envelope *e, enum envelope_int f, int64_t v)
{
    e->num[f] = v;
    e->has_num |= 1u << f;
}

int envelope_has_int(const struct envelope *e, enum envelope_int f)
{
    return (e->has_num >> f) & 1u;
}

int64_t envelope_get_int(const struct envelope *e, enum envelope_int f, int64_t dflt)
{
    return envelope_has_int(e, f) ? e->num[f] : dflt;
}

void envelope_set_payload(struct envelope *e, const char *data, size_t len)
{
    envelope_take_payload(e, xstrndup(data, len), len);
}

void envelope_take_payload(struct envelope *e, char *data, size_t len)
{
    free(e->payload);
    e->payload = data;
    e->payload_len = data ? len : 0;
}

const char *envelope_op_name(enum envelope_op op)
{
    return (op > OP_NONE && op < OP_COUNT) ? op_names[op] : "?";
}

const char *envelope_error_string(int code)
{
    switch (code) {
    case ENVELOPE_OK: return "ok";
    case ENVELOPE_AGAIN: return "nothing to read";
    case ENVELOPE_ERR_JSON: return "header is not a flat JSON object";
    case ENVELOPE_ERR_VERSION: return "unsupported envelope version";
    case ENVELOPE_ERR_OP: return "missing or unknown op";
    case ENVELOPE_ERR_FRAMES: return "wrong number of frames";
    case ENVELOPE_ERR_SOCKET: return "socket error";
    }
    return "unknown envelope error";
}

/* ---- encode ------------------------------------------------------------ */

static void gen_key(yajl_gen g, const char *k)
{
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
}

/* One generator for the process, reset per header: allocating one per
 * envelope was a visible share of the message path. The processes encode
 * from their main thread only. */
static yajl_gen shared_gen(void)
{
    static yajl_gen g;
    if (!g)
        g = yajl_gen_alloc(NULL);
    yajl_gen_reset(g, NULL);
    yajl_gen_clear(g);
    return g;
}

void envelope_encode(const struct envelope *e, struct buf *out)
{
    yajl_gen g = shared_gen();
    const unsigned char *json;
    size_t len;

    yajl_gen_map_open(g);
    gen_key(g, "v");
    yajl_gen_integer(g, ENVELOPE_VERSION);
    gen_key(g, "op");
    gen_key(g, envelope_op_name(e->op));
    for (int i = 0; i < ENV_STR_COUNT; i++) {
        if (!e->str[i])
            continue;
        gen_key(g, str_names[i]);
        yajl_gen_string(g, (const unsigned char *)e->str[i], strlen(e->str[i]));
    }
    for (int i = 0; i < ENV_INT_COUNT; i++) {
        if (!envelope_has_int(e, (enum envelope_int)i))
            continue;
        gen_key(g, int_names[i]);
        yajl_gen_integer(g, (long long)e->num[i]);
    }
    if (e->payload) {
        gen_key(g, "p");
        yajl_gen_integer(g, 1);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &json, &len);
    buf_append(out, json, len);
}

/* ---- decode ------------------------------------------------------------ */

enum key_kind { KEY_UNKNOWN, KEY_V, KEY_OP, KEY_P, KEY_STR, KEY_INT };

struct decode_state {
    struct envelope *e;
    int depth;
    enum key_kind key;
    int key_index;
    int version;
    int has_payload;  /* "p":1 */
    int bad;          /* an ENVELOPE_ERR_* noticed inside a callback */
};

static int find_name(const char *const *names, int count, const unsigned char *k, size_t len)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == len && memcmp(names[i], k, len) == 0)
            return i;
    return -1;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len)
{
    struct decode_state *st = ctx;
    int i;

    if (len == 1 && k[0] == 'v')
        st->key = KEY_V;
    else if (len == 2 && memcmp(k, "op", 2) == 0)
        st->key = KEY_OP;
    else if (len == 1 && k[0] == 'p')
        st->key = KEY_P;
    else if ((i = find_name(str_names, ENV_STR_COUNT, k, len)) >= 0) {
        st->key = KEY_STR;
        st->key_index = i;
    } else if ((i = find_name(int_names, ENV_INT_COUNT, k, len)) >= 0) {
        st->key = KEY_INT;
        st->key_index = i;
    } else {
        /* Unknown keys are optional fields of a newer minor revision:
         * ignored, as envelope.h promises. */
        st->key = KEY_UNKNOWN;
    }
    return 1;
}

static int on_start_map(void *ctx)
{
    struct decode_state *st = ctx;
    if (++st->depth > 1) {
        st->bad = ENVELOPE_ERR_JSON;
        return 0;
    }
    return 1;
}

static int on_end_map(void *ctx)
{
    struct decode_state *st = ctx;
    st->depth--;
    return 1;
}

static int on_nested(void *ctx)
{
    struct decode_state *st = ctx;
    st->bad = ENVELOPE_ERR_JSON;
    return 0;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct decode_state *st = ctx;

    switch (st->key) {
    case KEY_OP: {
        int op = find_name(op_names, OP_COUNT, s, len);
        if (op <= OP_NONE) {
            st->bad = ENVELOPE_ERR_OP;
            return 0;
        }
        st->e->op = (enum envelope_op)op;
        return 1;
    }
    case KEY_STR:
        free(st->e->str[st->key_index]);
        st->e->str[st->key_index] = xstrndup((const char *)s, len);
        return 1;
    case KEY_UNKNOWN:
        return 1;
    default:
        st->bad = ENVELOPE_ERR_JSON;
        return 0;
    }
}

static int on_integer(void *ctx, long long v)
{
    struct decode_state *st = ctx;

    switch (st->key) {
    case KEY_V:
        st->version = (int)v;
        return 1;
    case KEY_P:
        st->has_payload = v == 1;
        return 1;
    case KEY_INT:
        envelope_set_int(st->e, (enum envelope_int)st->key_index, (int64_t)v);
        return 1;
    case KEY_UNKNOWN:
        return 1;
    default:
        st->bad = ENVELOPE_ERR_JSON;
        return 0;
    }
}

static int on_other(void *ctx)
{
    struct decode_state *st = ctx;
    if (st->key == KEY_UNKNOWN)
        return 1;
    st->bad = ENVELOPE_ERR_JSON;
    return 0;
}

static int on_boolean(void *ctx, int b)
{
    (void)b;
    return on_other(ctx);
}

static int on_double(void *ctx, double d)
{
    (void)d;
    return on_other(ctx);
}

static const yajl_callbacks decode_callbacks = {
    .yajl_null = on_other,
    .yajl_boolean = on_boolean,
    .yajl_integer = on_integer,
    .yajl_double = on_double,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_nested,
    .yajl_end_array = on_nested,
};

int envelope_decode(const char *json, size_t len, struct envelope **out)
{
    int has_payload;
    return envelope_decode_framed(json, len, out, &has_payload);
}

int envelope_decode_framed(const char *json, size_t len, struct envelope **out, int *has_payload)
{
    struct decode_state st = { .e = envelope_new(OP_NONE), .version = -1 };
    yajl_handle h = yajl_alloc(&decode_callbacks, NULL, &st);
    int rc = ENVELOPE_ERR_JSON;

    *out = NULL;
    if (yajl_parse(h, (const unsigned char *)json, len) != yajl_status_ok ||
        yajl_complete_parse(h) != yajl_status_ok) {
        rc = st.bad ? st.bad : ENVELOPE_ERR_JSON;
        goto out;
    }
    if (st.version != ENVELOPE_VERSION) {
        rc = ENVELOPE_ERR_VERSION;
        goto out;
    }
    if (st.e->op == OP_NONE) {
        rc = ENVELOPE_ERR_OP;
        goto out;
    }
    *out = st.e;
    *has_payload = st.has_payload;
    st.e = NULL;
    rc = ENVELOPE_OK;
out:
    yajl_free(h);
    envelope_free(st.e);
    return rc;
}

/* ---- ZeroMQ framing ---------------------------------------------------- */

int envelope_send(void *sock, const char *peer, struct envelope **e)
{
    struct envelope *env = *e;
    struct buf hdr;
    int rc = ENVELOPE_OK;
    int more = env->payload ? ZMQ_SNDMORE : 0;

    *e = NULL;
    buf_init(&hdr);
    envelope_encode(env, &hdr);
    if (peer && zmq_send(sock, peer, strlen(peer), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        rc = ENVELOPE_ERR_SOCKET;
        goto out;
    }
    /* Once the identity frame is queued the rest of the parts are accepted
     * atomically by ZeroMQ, so only the first send can hit the HWM. */
    if (zmq_send(sock, hdr.data, hdr.len, more | ZMQ_DONTWAIT) < 0) {
        rc = ENVELOPE_ERR_SOCKET;
        goto out;
    }
    if (more && zmq_send(sock, env->payload, env->payload_len, ZMQ_DONTWAIT) < 0)
        rc = ENVELOPE_ERR_SOCKET;
out:
    buf_fini(&hdr);
    envelope_free(env);
    return rc;
}

static int has_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof(more);
    if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) < 0)
        return 0;
    return more;
}

static void drain_rest(void *sock)
{
    while (has_more(sock)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        (void)zmq_msg_recv(&m, sock, 0); /* discarding a bad message */
        zmq_msg_close(&m);
    }
}

void envelope_reader_init(struct envelope_reader *rd, void *sock, int is_router)
{
    rd->sock = sock;
    rd->is_router = is_router;
    rd->in_message = 0;
    rd->peer[0] = '\0';
}

/* Receives the next frame of the current message into m (initialized). */
static int recv_part(void *sock, zmq_msg_t *m)
{
    zmq_msg_init(m);
    if (zmq_msg_recv(m, sock, 0) < 0) {
        zmq_msg_close(m);
        return ENVELOPE_ERR_SOCKET;
    }
    return ENVELOPE_OK;
}

static int bad_message(struct envelope_reader *rd, int rc)
{
    drain_rest(rd->sock);
    rd->in_message = 0;
    return rc;
}

int envelope_recv(struct envelope_reader *rd, struct envelope **out)
{
    zmq_msg_t m;
    int rc, has_payload = 0;

    *out = NULL;
    if (!rd->in_message) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rd->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return errno == EAGAIN ? ENVELOPE_AGAIN : ENVELOPE_ERR_SOCKET;
        }
        if (rd->is_router) {
            size_t n = zmq_msg_size(&m);
            if (n > ENVELOPE_PEER_MAX)
                n = ENVELOPE_PEER_MAX;
            memcpy(rd->peer, zmq_msg_data(&m), n);
            rd->peer[n] = '\0';
            int more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            if (!more)
                return ENVELOPE_ERR_FRAMES;
            if (recv_part(rd->sock, &m) < 0)
                return ENVELOPE_ERR_SOCKET;
        }
    } else if (recv_part(rd->sock, &m) < 0) {
        rd->in_message = 0;
        return ENVELOPE_ERR_SOCKET;
    }

    /* m holds a header frame. */
    rc = envelope_decode_framed(zmq_msg_data(&m), zmq_msg_size(&m), out, &has_payload);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    if (rc != ENVELOPE_OK) {
        if (more)
            return bad_message(rd, rc);
        rd->in_message = 0;
        return rc;
    }
    if (has_payload) {
        if (!more || recv_part(rd->sock, &m) < 0) {
            envelope_free(*out);
            *out = NULL;
            rd->in_message = 0;
            return more ? ENVELOPE_ERR_SOCKET : ENVELOPE_ERR_FRAMES;
        }
        envelope_set_payload(*out, zmq_msg_data(&m), zmq_msg_size(&m));
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    rd->in_message = more;
    return ENVELOPE_OK;
}

/* Serialized-stanza edits; see payload.h. */
#include "payload.h"
#include "buf.h"

#include <string.h>

#define OPEN "<message"
#define CLOSE "</message>"

static int is_message(const char *xml, size_t len)
{
    return len > 9 && strncmp(xml, OPEN, 8) == 0 && strchr(" />", xml[8]);
}

int payload_add_child(const char *xml, size_t len, const char *child, struct buf *out)
{
    size_t cl = strlen(CLOSE);

    if (!is_message(xml, len))
        return -1;
    if (len >= cl && memcmp(xml + len - cl, CLOSE, cl) == 0) {
        buf_append(out, xml, len - cl);
    } else if (len >= 2 && memcmp(xml + len - 2, "/>", 2) == 0) {
        buf_append(out, xml, len - 2);
        buf_append_str(out, ">");
    } else {
        return -1;
    }
    buf_append_str(out, child);
    buf_append_str(out, CLOSE);
    return 0;
}

int payload_with_client_ns(const char *xml, size_t len, struct buf *out)
{
    if (!is_message(xml, len))
        return -1;
    buf_append_str(out, OPEN " xmlns='jabber:client'");
    buf_append(out, xml + 8, len - 8);
    return 0;
}

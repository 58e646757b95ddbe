/* TLS for client connections (OpenSSL); see tls.c. */
#ifndef PARLEY_GATEWAY_TLS_H
#define PARLEY_GATEWAY_TLS_H

#include <openssl/ssl.h>

/* Builds the server context from the configured certificate and key, or
 * returns NULL after logging why: the caller must refuse to start, never
 * fall back to plaintext (STYLE.md "Errors"). */
SSL_CTX *tls_ctx_new(const char *cert_path, const char *key_path);
/* A server-side session on fd, in accept state. NULL on failure. */
SSL *tls_new_session(SSL_CTX *ctx, int fd);

#endif

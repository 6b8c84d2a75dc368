/* Which peer addresses a download may connect to (the SSRF guard's table). */
#include <netinet/in.h>
#include <string.h>

#include "image/fetch.h"

typedef struct {
    uint32_t net;
    int bits;
    const char *what;
} v4_range;

static const v4_range V4[] = {
    {0x00000000, 8, "unspecified"},          /* 0.0.0.0/8 "this network" */
    {0x0A000000, 8, "private"},              /* 10/8 */
    {0x64400000, 10, "shared (CGNAT)"},      /* 100.64/10 */
    {0x7F000000, 8, "loopback"},             /* 127/8 */
    {0xA9FE0000, 16, "link-local"},          /* 169.254/16 (cloud metadata lives here) */
    {0xAC100000, 12, "private"},             /* 172.16/12 */
    {0xC0000000, 24, "reserved"},            /* 192.0.0/24 IETF protocol assignments */
    {0xC0000200, 24, "reserved"},            /* 192.0.2/24 documentation */
    {0xC0A80000, 16, "private"},             /* 192.168/16 */
    {0xC6120000, 15, "reserved"},            /* 198.18/15 benchmarking */
    {0xC6336400, 24, "reserved"},            /* 198.51.100/24 documentation */
    {0xCB007100, 24, "reserved"},            /* 203.0.113/24 documentation */
    {0xE0000000, 4, "multicast"},            /* 224/4 */
    {0xF0000000, 4, "reserved"},             /* 240/4, broadcast included */
};

static const char *v4_class(uint32_t a) {
    for (size_t i = 0; i < sizeof V4 / sizeof *V4; i++) {
        uint32_t mask = 0xFFFFFFFFu << (32 - V4[i].bits);
        if ((a & mask) == V4[i].net) return V4[i].what;
    }
    return NULL;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static bool prefix(const uint8_t *a, const uint8_t *p, int bytes) { return !memcmp(a, p, (size_t)bytes); }

static const char *v6_class(const uint8_t *a) {
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF},
                                   nat64[12] = {0, 0x64, 0xFF, 0x9B}, nat64_local[6] = {0, 0x64, 0xFF, 0x9B, 0, 1},
                                   discard[8] = {0x01, 0x00}, doc[4] = {0x20, 0x01, 0x0D, 0xB8};
    if (prefix(a, mapped, 12) || prefix(a, nat64, 12)) return v4_class(be32(a + 12));
    if (prefix(a, zero, 15) && a[15] <= 1) return a[15] ? "loopback" : "unspecified";
    if (prefix(a, zero, 12)) return "reserved"; /* deprecated IPv4-compatible ::a.b.c.d */
    if (a[0] == 0x20 && a[1] == 0x02) return v4_class(be32(a + 2)); /* 6to4 2002::/16 */
    if (prefix(a, nat64_local, 6) || prefix(a, discard, 8) || prefix(a, doc, 4)) return "reserved";
    if ((a[0] & 0xFE) == 0xFC) return "private";                      /* fc00::/7 unique local */
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) return "link-local";   /* fe80::/10 */
    if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) return "private";      /* fec0::/10 site-local */
    if (a[0] == 0xFF) return "multicast";
    return NULL;
}

const char *embd_addr_nonpublic(const struct sockaddr *sa) {
    if (!sa) return "not an IP address";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return v4_class(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) return v6_class(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return "not an IP address";
}

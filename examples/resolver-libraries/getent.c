/*
 * getent hosts|ahosts|ahostsv4|ahostsv6 [KEY…]: the `hosts` databases of glibc's getent
 * (nss/getent.c), written for minikind's prober images so that one source gives the same
 * command over glibc (a Debian-based image's `getent`) and over musl (an Alpine-based one's).
 * The lookups are the C library's: what a probe sees is that library's resolver at work.
 *
 * - hosts KEY: an address key is looked up in reverse (gethostbyaddr); a name is asked for IPv6
 *   first and IPv4 only when that finds nothing (gethostbyname2 AF_INET6, then AF_INET), as
 *   glibc's getent does. One line per address: "ADDRESS NAME ALIASES…".
 * - hosts without a key: every entry of the hosts file (gethostent).
 * - ahosts, ahostsv4, ahostsv6 KEY: getaddrinfo with AF_UNSPEC, AF_INET or AF_INET6 (the v6 form
 *   with AI_V4MAPPED), AI_CANONNAME; one line per result: "ADDRESS STREAM|DGRAM|RAW [CANON]".
 *
 * Exit status as glibc's getent: 0 found, 1 bad arguments or unknown database, 2 a key was not
 * found, 3 enumeration not supported.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void print_hostent(const struct hostent *h)
{
    for (char **a = h->h_addr_list; *a != NULL; a++) {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(h->h_addrtype, *a, text, sizeof text) == NULL)
            continue;
        printf("%-15s %s", text, h->h_name);
        for (char **alias = h->h_aliases; alias != NULL && *alias != NULL; alias++)
            printf(" %s", *alias);
        printf("\n");
    }
}

static int hosts(int count, char **keys)
{
    if (count == 0) {
        struct hostent *h;
        sethostent(0);
        while ((h = gethostent()) != NULL)
            print_hostent(h);
        endhostent();
        return 0;
    }
    int status = 0;
    for (int i = 0; i < count; i++) {
        unsigned char addr[sizeof(struct in6_addr)];
        struct hostent *h;
        if (inet_pton(AF_INET6, keys[i], addr) == 1)
            h = gethostbyaddr(addr, sizeof(struct in6_addr), AF_INET6);
        else if (inet_pton(AF_INET, keys[i], addr) == 1)
            h = gethostbyaddr(addr, sizeof(struct in_addr), AF_INET);
        else if ((h = gethostbyname2(keys[i], AF_INET6)) == NULL)
            h = gethostbyname2(keys[i], AF_INET);
        if (h == NULL)
            status = 2;
        else
            print_hostent(h);
    }
    return status;
}

static const char *socktype_name(int socktype)
{
    switch (socktype) {
    case SOCK_STREAM:
        return "STREAM";
    case SOCK_DGRAM:
        return "DGRAM";
    case SOCK_RAW:
        return "RAW";
    default:
        return "UNKNOWN";
    }
}

static int ahosts(int family, int flags, int count, char **keys)
{
    if (count == 0)
        return 3;
    int status = 0;
    for (int i = 0; i < count; i++) {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = family;
        hints.ai_flags = AI_CANONNAME | flags;
        struct addrinfo *res = NULL;
        if (getaddrinfo(keys[i], NULL, &hints, &res) != 0) {
            status = 2;
            continue;
        }
        for (struct addrinfo *p = res; p != NULL; p = p->ai_next) {
            char text[INET6_ADDRSTRLEN];
            const void *addr = p->ai_family == AF_INET
                ? (const void *)&((const struct sockaddr_in *)p->ai_addr)->sin_addr
                : (const void *)&((const struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
            if (inet_ntop(p->ai_family, addr, text, sizeof text) == NULL)
                continue;
            printf("%-15s %-6s %s\n", text, socktype_name(p->ai_socktype),
                   p == res && p->ai_canonname != NULL ? p->ai_canonname : "");
        }
        freeaddrinfo(res);
    }
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: getent hosts|ahosts|ahostsv4|ahostsv6 [KEY...]\n");
        return 1;
    }
    const char *db = argv[1];
    int count = argc - 2;
    char **keys = argv + 2;
    if (strcmp(db, "hosts") == 0)
        return hosts(count, keys);
    if (strcmp(db, "ahosts") == 0)
        return ahosts(AF_UNSPEC, 0, count, keys);
    if (strcmp(db, "ahostsv4") == 0)
        return ahosts(AF_INET, 0, count, keys);
    if (strcmp(db, "ahostsv6") == 0)
        return ahosts(AF_INET6, AI_V4MAPPED, count, keys);
    fprintf(stderr, "Unknown database: %s\n", db);
    return 1;
}

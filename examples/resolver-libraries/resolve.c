/*
 * resolve NAME: one getaddrinfo() lookup, as most programs make one (AF_UNSPEC: IPv4 and IPv6,
 * no AI_ADDRCONFIG), printing each address on its own line. The same source is built against
 * glibc (dynamically, with the host's libc) and against musl (`musl-gcc -static`), so that the
 * two images differ in their C library only: what the cluster DNS sees is each library's own
 * resolver at work. Exit status 2 with getaddrinfo's message when the name does not resolve.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: resolve NAME\n");
        return 64;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    /* One entry per address instead of one per socket type. */
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "resolve %s: %s\n", argv[1], gai_strerror(rc));
        return 2;
    }
    for (struct addrinfo *p = res; p != NULL; p = p->ai_next) {
        char text[INET6_ADDRSTRLEN];
        const void *addr = p->ai_family == AF_INET
            ? (const void *)&((const struct sockaddr_in *)p->ai_addr)->sin_addr
            : (const void *)&((const struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
        if (inet_ntop(p->ai_family, addr, text, sizeof text) != NULL)
            printf("%s\n", text);
    }
    freeaddrinfo(res);
    return 0;
}

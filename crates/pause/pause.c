/*
 * crius-pause: the first process of every crius pod sandbox.
 *
 * It holds the pod's namespaces open, reaps the zombies it inherits as pid 1
 * of a shared PID namespace, and exits cleanly on SIGINT or SIGTERM. It is
 * linked statically so the sandbox image needs nothing else.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction sa;

    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("crius-pause %s\n", CRIUS_VERSION);
        return 0;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_terminate;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        return 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) {
        return 2;
    }
    for (;;) {
        pause();
    }
}

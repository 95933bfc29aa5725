/* sudo of the CCIS Workbench REHEARSAL system: a small, honest stand-in for sudo(8).
 *
 * Installed setuid root as /usr/bin/sudo. It grants root to the invoking user only when a sudoers rule names
 * that user (or, with %GROUP, a group the user is in) in /etc/sudoers or a file in /etc/sudoers.d:
 *
 *     USER ALL=(ALL) NOPASSWD:ALL        (also ALL=(ALL:ALL) NOPASSWD: ALL)
 *
 * A rule without NOPASSWD (`USER ALL=(ALL) ALL`) would need a password, which this sudo cannot ask for: such a
 * user is refused like one without a rule. Every other line (Defaults, aliases, command lists) grants nothing.
 * Like sudo, it ignores sudoers files not owned by root or writable by group or others, and files in
 * /etc/sudoers.d whose name contains a dot or ends in '~'.
 *
 * Usage: sudo [-n] CMD [ARGS...]   run CMD as root (PATH search in a safe PATH)
 *        sudo [-n] -s [CMD...]     root's shell, interactive on the same terminal (or `sh -c CMD...`)
 *        sudo -l [-U USER]         list USER's privileges (another user's: root or a granted user only)
 *        sudo -v, -k, -K, -V, -h   validate (no-op), forget (no-op), version, help
 *        -u root is accepted; other run-as users are not supported.
 *
 * The command runs with real and effective uid and gid 0, root's groups, and a cleared environment: TERM is
 * kept, HOME=/root, USER=root, LOGNAME=root, SHELL, a safe PATH, and SUDO_USER/SUDO_UID/SUDO_GID/SUDO_COMMAND.
 * It reads /etc/passwd and /etc/group itself (a static binary has no NSS modules in the rehearsal system).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SUDOERS "/etc/sudoers"
#define SUDOERS_D "/etc/sudoers.d"
#define VERSION "rehearsal sudo 1.0 (CCIS Workbench rehearsal system, not sudo.ws)"

enum grant { NONE = 0, WITH_PASSWORD = 1, NOPASSWD = 2 };

struct user {
    char name[256];
    uid_t uid;
    gid_t gid;
    char home[PATH_MAX];
    char shell[PATH_MAX];
    int found;
};

static void die(const char *fmt, const char *arg)
{
    fputs("sudo: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

/* The next whole line of *f* into buf; a line longer than the buffer is skipped entirely (never split into
 * two lines, which a crafted long field could otherwise turn into an entry of its own). */
static int read_line(FILE *f, char *buf, int size)
{
    while (fgets(buf, size, f)) {
        if (strchr(buf, '\n') || feof(f))
            return 1;
        int c;
        while ((c = fgetc(f)) != EOF && c != '\n')
            ;
    }
    return 0;
}

/* Field *n* (0-based) of a colon-separated line, copied into out (empty when it does not fit). */
static void field(const char *line, int n, char *out, size_t size)
{
    const char *p = line;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, ':');
        if (p)
            p++;
    }
    out[0] = '\0';
    if (!p)
        return;
    size_t len = strcspn(p, ":\n");
    if (len >= size)
        return;
    memcpy(out, p, len);
    out[len] = '\0';
}

/* Look a user up in /etc/passwd by name (when name is not NULL) or by uid. */
static struct user lookup_user(const char *name, uid_t uid)
{
    struct user u;
    memset(&u, 0, sizeof(u));
    FILE *f = fopen("/etc/passwd", "r");
    if (!f)
        return u;
    char line[4096], buf[PATH_MAX];
    while (read_line(f, line, sizeof(line))) {
        field(line, 0, buf, sizeof(u.name));
        if (!buf[0])
            continue;
        char uidbuf[32];
        field(line, 2, uidbuf, sizeof(uidbuf));
        char *end;
        unsigned long v = strtoul(uidbuf, &end, 10);
        if (!uidbuf[0] || *end)
            continue;
        if (name ? strcmp(buf, name) != 0 : (uid_t)v != uid)
            continue;
        memcpy(u.name, buf, strlen(buf) + 1); /* field() kept it shorter than u.name */
        u.uid = (uid_t)v;
        field(line, 3, buf, sizeof(buf));
        u.gid = (gid_t)strtoul(buf, NULL, 10);
        field(line, 5, u.home, sizeof(u.home));
        field(line, 6, u.shell, sizeof(u.shell));
        u.found = 1;
        break;
    }
    fclose(f);
    return u;
}

/* Whether user *u* is in group *group* (its primary group, or a member in /etc/group). */
static int in_group(const struct user *u, const char *group)
{
    FILE *f = fopen("/etc/group", "r");
    if (!f)
        return 0;
    char line[4096], name[256], gidbuf[32], members[4096];
    int yes = 0;
    while (!yes && read_line(f, line, sizeof(line))) {
        field(line, 0, name, sizeof(name));
        if (strcmp(name, group) != 0)
            continue;
        field(line, 2, gidbuf, sizeof(gidbuf));
        if (gidbuf[0] && (gid_t)strtoul(gidbuf, NULL, 10) == u->gid)
            yes = 1;
        field(line, 3, members, sizeof(members));
        for (char *save = NULL, *m = strtok_r(members, ",", &save); m && !yes; m = strtok_r(NULL, ",", &save))
            if (strcmp(m, u->name) == 0)
                yes = 1;
    }
    fclose(f);
    return yes;
}

/* The grant one sudoers line gives *u*: the first field names the user (or %group), the rest, without
 * blanks, must be one of the forms of "ALL=(ALL) NOPASSWD:ALL" (or "ALL=(ALL) ALL": a password rule). */
static enum grant rule_grant(char *line, const struct user *u)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0'; /* comments, and #include/#includedir: both sudoers files are always read here */
    char *save = NULL;
    char *who = strtok_r(line, " \t\r\n", &save);
    if (!who)
        return NONE;
    char rest[1024] = "";
    size_t n = 0;
    for (char *tok = strtok_r(NULL, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        size_t len = strlen(tok);
        if (n + len >= sizeof(rest))
            return NONE;
        memcpy(rest + n, tok, len + 1);
        n += len;
    }
    int match = who[0] == '%' ? in_group(u, who + 1) : strcmp(who, u->name) == 0;
    if (!match)
        return NONE;
    if (!strcmp(rest, "ALL=(ALL)NOPASSWD:ALL") || !strcmp(rest, "ALL=(ALL:ALL)NOPASSWD:ALL"))
        return NOPASSWD;
    if (!strcmp(rest, "ALL=(ALL)ALL") || !strcmp(rest, "ALL=(ALL:ALL)ALL"))
        return WITH_PASSWORD;
    return NONE;
}

static enum grant file_grant(const char *path, const struct user *u)
{
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return NONE;
    if (st.st_uid != 0) {
        fprintf(stderr, "sudo: %s is owned by uid %u, should be 0: ignored\n", path, (unsigned)st.st_uid);
        return NONE;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        fprintf(stderr, "sudo: %s is writable by group or others: ignored\n", path);
        return NONE;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return NONE;
    enum grant best = NONE;
    char line[2048];
    while (read_line(f, line, sizeof(line))) {
        enum grant g = rule_grant(line, u);
        if (g > best)
            best = g;
    }
    fclose(f);
    return best;
}

static int skip_name(const char *name)
{
    size_t len = strlen(name);
    return name[0] == '\0' || strchr(name, '.') != NULL || name[len - 1] == '~';
}

/* The best grant for *u* in /etc/sudoers and the files of /etc/sudoers.d (in name order). */
static enum grant sudoers_grant(const struct user *u)
{
    enum grant best = file_grant(SUDOERS, u);
    struct dirent **names = NULL;
    int n = scandir(SUDOERS_D, &names, NULL, alphasort);
    for (int i = 0; i < n; i++) {
        if (!skip_name(names[i]->d_name)) {
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", SUDOERS_D, names[i]->d_name);
            enum grant g = file_grant(path, u);
            if (g > best)
                best = g;
        }
        free(names[i]);
    }
    free(names);
    return best;
}

static void usage(int code)
{
    FILE *out = code ? stderr : stdout;
    fputs("usage: sudo -h | -K | -k | -V | -v\n"
          "usage: sudo -l [-U user]\n"
          "usage: sudo [-n] [-u root] -s [command [arg ...]]\n"
          "usage: sudo [-n] [-u root] command [arg ...]\n", out);
    exit(code);
}

/* Search *cmd* in the safe PATH (as sudo's secure_path does). */
static const char *find_command(const char *cmd, char *buf, size_t size)
{
    if (strchr(cmd, '/'))
        return access(cmd, X_OK) == 0 ? cmd : NULL;
    char path[] = SAFE_PATH;
    char *save = NULL;
    for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        struct stat st;
        snprintf(buf, size, "%s/%s", dir, cmd);
        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

static char **root_environment(const char *shell, const struct user *caller, const char *command)
{
    static char *env[16];
    static char b_shell[PATH_MAX + 8], b_user[300], b_uid[48], b_gid[48], b_cmd[4200], b_term[256];
    int n = 0;
    const char *term = getenv("TERM");
    if (term && strlen(term) < 200 && !strchr(term, '/')) {
        snprintf(b_term, sizeof(b_term), "TERM=%s", term);
        env[n++] = b_term;
    }
    env[n++] = "HOME=/root";
    env[n++] = "USER=root";
    env[n++] = "LOGNAME=root";
    env[n++] = "PATH=" SAFE_PATH;
    snprintf(b_shell, sizeof(b_shell), "SHELL=%s", shell);
    env[n++] = b_shell;
    snprintf(b_user, sizeof(b_user), "SUDO_USER=%s", caller->name);
    env[n++] = b_user;
    snprintf(b_uid, sizeof(b_uid), "SUDO_UID=%u", (unsigned)caller->uid);
    env[n++] = b_uid;
    snprintf(b_gid, sizeof(b_gid), "SUDO_GID=%u", (unsigned)caller->gid);
    env[n++] = b_gid;
    snprintf(b_cmd, sizeof(b_cmd), "SUDO_COMMAND=%s", command);
    env[n++] = b_cmd;
    env[n] = NULL;
    return env;
}

/* `sudo -s CMD ARGS`: the words joined for `sh -c`, every non-word character escaped (as sudo does). */
static char *shell_command(char **argv)
{
    size_t size = 1;
    for (char **a = argv; *a; a++)
        size += 2 * strlen(*a) + 1;
    char *out = malloc(size), *p = out;
    if (!out)
        die("%s", "out of memory");
    for (char **a = argv; *a; a++) {
        if (a != argv)
            *p++ = ' ';
        for (const char *c = *a; *c; c++) {
            if (!(*c == '_' || *c == '-' || *c == '$' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z')
                  || (*c >= 'A' && *c <= 'Z')))
                *p++ = '\\';
            *p++ = *c;
        }
    }
    *p = '\0';
    return out;
}

int main(int argc, char **argv)
{
    int noninteractive = 0, shell = 0, list = 0, validate = 0, forget = 0, i;
    const char *list_user = NULL;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || !a[1])
            break;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "--non-interactive")) { noninteractive = 1; continue; }
        if (!strcmp(a, "--shell")) { shell = 1; continue; }
        if (!strcmp(a, "--list")) { list = 1; continue; }
        if (!strcmp(a, "--help")) usage(0);
        if (!strcmp(a, "--version")) { puts(VERSION); return 0; }
        if (a[1] == '-')
            die("unrecognized option '%s'", a);
        int took_value = 0;
        for (const char *c = a + 1; *c && !took_value; c++) {
            switch (*c) {
            case 'n': noninteractive = 1; break;
            case 's': shell = 1; break;
            case 'l': list = 1; break;
            case 'v': validate = 1; break;
            case 'k': case 'K': forget = 1; break;
            case 'h': usage(0); break;
            case 'V': puts(VERSION); return 0;
            case 'U': case 'u': {
                const char *val = c[1] ? c + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (!val)
                    die("option requires an argument -- '%s'", *c == 'U' ? "U" : "u");
                if (*c == 'U')
                    list_user = val;
                else if (strcmp(val, "root") && strcmp(val, "#0"))
                    die("the rehearsal sudo runs commands as root only, not as %s", val);
                took_value = 1; /* the rest of this word, or the next word, was the value */
                break;
            }
            default: {
                char opt[2] = {*c, 0};
                fprintf(stderr, "sudo: invalid option -- '%s'\n", opt);
                usage(1);
            }
            }
        }
    }
    int have_command = i < argc;
    if (list_user && !list)
        die("%s", "the -U option may only be used with the -l option");
    if (!list && !shell && !have_command && !validate) {
        if (forget)
            return 0; /* sudo -k/-K: there are no cached credentials to forget */
        usage(1);
    }
    if (geteuid() != 0)
        die("%s must be owned by uid 0 and have the setuid bit set", "/usr/bin/sudo");
    struct user caller = lookup_user(NULL, getuid());
    if (!caller.found) {
        fprintf(stderr, "sudo: you do not exist in the passwd database\n");
        return 1;
    }
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);

    if (list) {
        struct user who = caller;
        if (list_user) {
            who = lookup_user(list_user, 0);
            if (!who.found)
                die("unknown user %s", list_user);
            if (caller.uid != 0 && strcmp(who.name, caller.name) && sudoers_grant(&caller) != NOPASSWD)
                die("%s", "you are not allowed to list another user's privileges");
        }
        enum grant g = sudoers_grant(&who);
        if (g == NONE) {
            printf("User %s is not allowed to run sudo on %s.\n", who.name, host);
            return 1;
        }
        printf("User %s may run the following commands on %s:\n", who.name, host);
        printf(g == NOPASSWD ? "    (ALL) NOPASSWD: ALL\n" : "    (ALL) ALL\n");
        return 0;
    }

    /* root is root already: it needs no rule; everyone else needs a NOPASSWD rule */
    enum grant g = caller.uid == 0 ? NOPASSWD : sudoers_grant(&caller);
    if (g != NOPASSWD) {
        if (noninteractive)
            fprintf(stderr, "sudo: a password is required\n");
        else if (g == NONE)
            fprintf(stderr, "%s is not in the sudoers file.\n", caller.name);
        else
            fprintf(stderr, "sudo: %s needs a password for sudo; the rehearsal sudo cannot ask for one\n",
                    caller.name);
        return 1;
    }
    if (!shell && !have_command)
        return 0; /* sudo -v */

    /* root from here on: the command is looked up (and run) with root's rights */
    gid_t groups[1] = {0};
    if (setgroups(1, groups) != 0 || setgid(0) != 0 || setuid(0) != 0)
        die("cannot become root: %s", strerror(errno));

    struct user root = lookup_user(NULL, 0);
    const char *sh = getenv("SHELL");
    if (!sh || sh[0] != '/' || access(sh, X_OK) != 0)
        sh = root.found && root.shell[0] == '/' ? root.shell : "/bin/sh";
    char shellbuf[PATH_MAX];
    snprintf(shellbuf, sizeof(shellbuf), "%s", sh);

    char cmdbuf[PATH_MAX];
    char **cmd_argv;
    const char *path;
    char *shell_argv[4];
    if (shell) {
        path = shellbuf;
        const char *base = strrchr(shellbuf, '/');
        shell_argv[0] = (char *)(base ? base + 1 : shellbuf);
        if (have_command) {
            shell_argv[1] = "-c";
            shell_argv[2] = shell_command(argv + i);
            shell_argv[3] = NULL;
        } else {
            shell_argv[1] = NULL;
        }
        cmd_argv = shell_argv;
    } else {
        path = find_command(argv[i], cmdbuf, sizeof(cmdbuf));
        if (!path)
            die("%s: command not found", argv[i]);
        cmd_argv = argv + i;
    }
    char command[4096];
    snprintf(command, sizeof(command), "%s", path);
    for (char **a = cmd_argv + 1; *a; a++) {
        size_t len = strlen(command);
        snprintf(command + len, sizeof(command) - len, " %s", *a);
    }
    char **env = root_environment(shellbuf, &caller, command);

    execve(path, cmd_argv, env);
    fprintf(stderr, "sudo: unable to execute %s: %s\n", path, strerror(errno));
    return 1;
}

#ifndef BGQ_CSQLITE_SHIM_H
#define BGQ_CSQLITE_SHIM_H

#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
#else
#error "bgq needs SQLite's C headers: install them with 'apt-get install libsqlite3-dev' (Debian/Ubuntu) or 'brew install sqlite' (macOS)"
#endif

/* Turns off SQLite's memory statistics, which take a global mutex around every allocation; bgq
   never reads them. Takes effect only before SQLite initializes (the process's first open); later
   it returns SQLITE_MISUSE and changes nothing. sqlite3_config is variadic, so Swift cannot call it. */
static inline int bgq_sqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

#endif

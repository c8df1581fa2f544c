#ifndef BGQ_CSQLITE_SHIM_H
#define BGQ_CSQLITE_SHIM_H

#if __has_include(<sqlite3.h>)
#include <sqlite3.h>
#else
#error "bgq needs SQLite's C headers: install them with 'apt-get install libsqlite3-dev' (Debian/Ubuntu) or 'brew install sqlite' (macOS)"
#endif

#endif

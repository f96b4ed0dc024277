/* The plugin ABI is a header only; this file makes the target a buildable C module. */
#include "curec_plugin.h"

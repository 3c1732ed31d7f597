/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* io.kvegress.Controller1 for kvctl: read-only. */

#include "manager.h"

int introspect_start(Manager *m);

/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* fuzz-kvnetd's in-memory Manager (fuzz-kvnetd-manager.c). */

#include "fuzz-util.h"
#include "manager.h"
#include "validate.h"

/* Frees every service and VIP. */
void fuzz_manager_reset(Manager *m);

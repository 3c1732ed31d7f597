/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The kvnetd D-Bus interface: the only way into the privileged process.
 *
 * Transport: sd-bus peer-to-peer on a private AF_UNIX stream socket (no
 * broker). kvnetd checks SO_PEERCRED of each connection against its
 * configured uid/gid before serving it.
 *
 * Verbs, never mechanisms: clients name a service, addresses, ports and
 * networks; kvnetd builds every netlink and nftables request itself from the
 * validated fields. Every operation is idempotent, so a restarted client
 * replays its whole desired state and nothing flaps.
 *
 * Times: deadlines are absolute CLOCK_MONOTONIC microseconds (the clock is
 * shared by all processes of one boot and does not jump with wall-clock
 * changes). A grant whose deadline passes without renewal is revoked by
 * kvnetd itself: the VIP is removed and the service's egress with it. */

#define KVNETD_BUS_INTERFACE "io.kvegress.Net1"
#define KVNETD_BUS_PATH "/io/kvegress/Net1"
#define KVNETD_SOCKET_PATH_DEFAULT "/run/kvnetd/kvnetd.sock"

/* GrantVip(s service, s address, s ifname, t deadline_usec)
 *   Bind address (/32 or /128, preferred_lft 0) on ifname for service
 *   ("namespace/name"), announce it (gratuitous ARP / unsolicited NA) and
 *   hold it until deadline_usec unless renewed. Re-granting renews.
 *   address may be written bare or with /32 (/128). The deadline belongs to
 *   the service: all its VIPs share it, and each GrantVip or RenewGrant sets
 *   it to the value given (it can also move earlier). A VIP granted to
 *   another service, or bound on another interface, is a Conflict, and so
 *   is an address already on the node that kvnetd did not add (any
 *   interface, any prefix length: the node's own address inside a VIP
 *   range), named with its interface and prefix. kvnetd never changes or
 *   removes an address it did not add. A replay
 *   of a VIP that is already bound (e.g. after a kvnetd restart) changes
 *   nothing in the kernel. A new IPv6 VIP bound with duplicate-address
 *   detection (no --ipv6-nodad) is answered once DAD has ended (1-2 s; at
 *   most 5 s), when the node answers neighbour solicitations for it; if
 *   DAD fails, Conflict. Other calls are served meanwhile. */
#define KVNETD_METHOD_GRANT_VIP "GrantVip"
#define KVNETD_SIG_GRANT_VIP "ssst"

/* RenewGrant(s service, t deadline_usec): extend every VIP of service.
 *   NotGranted if the service holds no VIP granted since kvnetd started. */
#define KVNETD_METHOD_RENEW_GRANT "RenewGrant"
#define KVNETD_SIG_RENEW_GRANT "st"

/* ReleaseVip(s service, s address): remove one VIP (and the egress that used it).
 *   The egress goes as a whole (all the service's mappings), but only if it
 *   SNATs to this VIP: after a SetEgress that moved it to another VIP (sent
 *   before on the same connection), the egress stays. Releasing a VIP
 *   that is not bound succeeds; one granted to another service is
 *   NotGranted. */
#define KVNETD_METHOD_RELEASE_VIP "ReleaseVip"
#define KVNETD_SIG_RELEASE_VIP "ss"

/* SetEgress(s service, s vip4, s vip6, as pods, a(sq) ports,
 *           as allowed, as denied, as excluded)
 *   Replace the egress policy of service. vip4/vip6 are "" or a VIP currently
 *   granted to this service. pods: pod addresses of either family; an IPv4
 *   pod is SNATed to vip4, an IPv6 pod to vip6. ports: (protocol, port) with
 *   protocol in tcp/udp/sctp; empty = all traffic. allowed: if non-empty, only
 *   these destinations are SNATed. denied and excluded (cluster pod/service
 *   CIDRs) are never SNATed; exclusions match the original (pre-DNAT)
 *   destination. */
/*   vip4/vip6 must have been granted to this service with GrantVip (since
 *   kvnetd started), else NotGranted; both "" removes the egress. A pod of a
 *   family whose VIP is "" is InvalidArgs, as is a pod listed twice. A pod
 *   mapped by another live service is a Conflict (remove it there first).
 *   Ports and networks are stored sorted and de-duplicated (a network inside
 *   another is dropped); ListEgress returns them that way. The change is one
 *   nft transaction; then the conntrack entries of every pod whose SNAT
 *   changed are deleted. Sending the same policy again changes nothing. */
#define KVNETD_METHOD_SET_EGRESS "SetEgress"
#define KVNETD_SIG_SET_EGRESS "sssasa(sq)asasas"

/* RemoveService(s service): drop the service's egress and all its VIPs.
 *   Removing an unknown service succeeds. */
#define KVNETD_METHOD_REMOVE_SERVICE "RemoveService"
#define KVNETD_SIG_REMOVE_SERVICE "s"

/* ListVips() -> a(ssst): (service, address, ifname, deadline_usec)
 *   A VIP found in the kernel at start and not yet claimed again shows with
 *   service "" until the grace period ends. */
#define KVNETD_METHOD_LIST_VIPS "ListVips"
#define KVNETD_SIG_LIST_VIPS_REPLY "a(ssst)"

/* ListEgress() -> a(sssasa(sq)asasas): one SetEgress argument tuple per service.
 *   Only policies set since kvnetd started: after a restart, clients replay.
 *
 * Restart: kvnetd keeps what a previous run left in the kernel (its nft
 * table, VIPs in its ranges) for a grace period (--grace-period, 30 s by
 * default, but never past a grant's recorded deadline) while clients replay
 * GrantVip then SetEgress; what nobody claims by then is removed. */
#define KVNETD_METHOD_LIST_EGRESS "ListEgress"
#define KVNETD_SIG_LIST_EGRESS_REPLY "a(sssasa(sq)asasas)"

/* DescribeService(s service) -> s rules
 *   The nft objects kvnetd programmed for service (its chain, then each of
 *   its sets), as `nft list` prints them, for `kvctl rules`. Read-only;
 *   the key is validated as for every other method, and the text is cut at
 *   KVNETD_MAX_DESCRIBE bytes (a line says so). A service without egress
 *   here is NotGranted. */
#define KVNETD_METHOD_DESCRIBE_SERVICE "DescribeService"
#define KVNETD_SIG_DESCRIBE_SERVICE "s"
#define KVNETD_MAX_DESCRIBE (256 * 1024)

/* GetMetrics() -> s: kvnetd's metrics in the Prometheus text format
 *   (`kvctl metrics` merges the three daemons'). Read-only, bounded. */
#define KVNETD_METHOD_GET_METRICS "GetMetrics"

/* Read-only introspection: peers admitted by the read-only policy (root when
 * it is not the configured client, and the kvegress group: kvctl and the
 * metrics exporter) may call these methods only; any other call on their
 * connection is answered org.freedesktop.DBus.Error.AccessDenied. */
#define KVNETD_READ_ONLY_METHODS                                                                            \
        {                                                                                                   \
                KVNETD_METHOD_LIST_VIPS, KVNETD_METHOD_LIST_EGRESS, KVNETD_METHOD_DESCRIBE_SERVICE,         \
                        KVNETD_METHOD_GET_METRICS, NULL                                                     \
        }
/* The group admitted read-only by default (if it exists). */
#define KVEGRESS_READ_ONLY_GROUP "kvegress"

/* Signal GrantExpired(s service): kvnetd fenced the service itself because its
 * deadline passed. */
#define KVNETD_SIGNAL_GRANT_EXPIRED "GrantExpired"
#define KVNETD_SIG_GRANT_EXPIRED "s"

/* Error names (the message always names the offending field). */
#define KVNETD_ERROR_INVALID_ARGS "org.freedesktop.DBus.Error.InvalidArgs"
#define KVNETD_ERROR_NOT_GRANTED "io.kvegress.Net1.Error.NotGranted"
#define KVNETD_ERROR_LIMIT "io.kvegress.Net1.Error.LimitExceeded"
#define KVNETD_ERROR_KERNEL "io.kvegress.Net1.Error.Kernel"
/* The request is valid but collides with another service's state: the VIP is
 * granted to another service, or a pod address is mapped by another service
 * (remove it there first; kvnetd never moves a pod between two live
 * services by itself). */
#define KVNETD_ERROR_CONFLICT "io.kvegress.Net1.Error.Conflict"

/* Limits: every resource a client can push on. Enforced and tested at the
 * limit and one past it (services, VIPs and pod mappings on a node through
 * kvnetd's --lower-limits, plus a static check of the values here). One
 * change costs what it changes whatever the count (kvnetd/README.md). */
#define KVNETD_MAX_SERVICES 65536
#define KVNETD_MAX_VIPS_PER_SERVICE 8
#define KVNETD_MAX_VIPS 65536
#define KVNETD_MAX_PODS_PER_SERVICE 16384
#define KVNETD_MAX_PODS_TOTAL 65536
#define KVNETD_MAX_PORTS 64
#define KVNETD_MAX_NETWORKS 256
#define KVNETD_MAX_CONNECTIONS 16
#define KVNETD_MAX_STRING 512
/* "namespace/name": both are DNS labels in Kubernetes (<= 63 each); the key
 * is stored in an nft rule comment, which holds at most 128 bytes. */
#define KVNETD_MAX_SERVICE_KEY 127
/* A grant is never longer than this from now: a client cannot make kvnetd
 * hold a VIP for ever by sending a huge deadline. */
#define KVNETD_MAX_GRANT_USEC (300ULL * 1000000ULL)

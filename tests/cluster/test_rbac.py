#!/usr/bin/env python3
"""deploy/kubernetes/rbac.yaml is exactly what the daemons need: no missing permission, no excess one.

The cluster runs kvpd and kvelectd with TokenRequest tokens of the manifest's ServiceAccount, and the API
server enforces RBAC and writes an audit log. A representative scenario runs: an egress Service comes up
on node1 (Lease created, annotations, status and an Event written), its annotations change, node1's
daemons stop gracefully (Leases released) so node2 takes over, node1's daemons come back, and the
Service is deleted. Then, from the audit log of the ServiceAccount's requests:
 - none was refused (401/403), and every one is allowed by the manifest as the server stores it;
 - for each rule of each role, and each single verb, resource and API group of a rule that lists several,
   the manifest without it denies at least one recorded request: nothing in the manifest is unused;
 - the same for each binding;
 - `kubectl auth can-i --as=system:serviceaccount:kube-system:kvegress` agrees with the evaluation for
   every recorded request, and for requests the daemons never make (it answers "no").
"""
import copy
import json
import time

import apiserver
import kvc_test
from cluster import RBAC_MANIFEST, SERVICE_ACCOUNT, VIPS4, VIPS6

_rbac = apiserver.server_module("rbac")
Attrs, Policy = _rbac.Attrs, _rbac.Policy

SA_USER = "system:serviceaccount:%s:%s" % SERVICE_ACCOUNT


class RbacManifestTest(kvc_test.ClusterTestCase):
    NODES = 2

    def recorded(self):
        """The distinct authorization attributes of the ServiceAccount's requests, with their HTTP codes."""
        out = {}
        with open(self.c.audit_log) as f:
            for line in f:
                ev = json.loads(line)
                if (ev.get("user") or {}).get("username") != SA_USER or "impersonatedUser" in ev:
                    continue
                ref = ev.get("objectRef")
                if ref:
                    a = Attrs(ev["verb"], True, ref.get("apiGroup", ""), ref.get("apiVersion", ""), ref["resource"],
                              ref.get("subresource", ""), ref.get("namespace", ""), ref.get("name", ""))
                else:
                    a = Attrs(ev["verb"], False, path=ev["requestURI"].split("?")[0])
                key = json.dumps(a.to_json(), sort_keys=True)
                out.setdefault(key, (a, set()))[1].add(ev["responseStatus"]["code"])
        return [v for _, v in sorted(out.items())]

    def scenario(self):
        c = self.c
        name, vip4, vip6 = "rbac-demo", VIPS4[6], VIPS6[6]
        ann = {"kube-vip.io/egress-ipv6": "true"}
        self.egress(name, 1, [vip4, vip6], annotations=ann)
        self.c.add_pod("%s-n2" % name, 2, labels={"app": name})
        self.wait(lambda: (c.service(name).get("metadata", {}).get("annotations") or {}).get("kube-vip.io/vipHost")
                  == "node1", 10, "vipHost written by node1")
        c.annotate(name, **{"kube-vip.io/egress-destination-ports": "tcp:80,udp:9000"})
        # graceful stop of the holder: kvpd releases the Lease, node2 takes it
        self.expect_down.update({("node1", d) for d in ("kvpd", "kvelectd", "kvnetd")})
        c.node(1).stop_daemons()
        self.wait(lambda: c.vip_holders(vip4) == ["node2"], 20, "the VIP on node2")
        self.wait(lambda: (c.service(name).get("metadata", {}).get("annotations") or {}).get("kube-vip.io/vipHost")
                  == "node2", 10, "vipHost written by node2")
        c.node(1).start_daemons()
        self.expect_down.clear()
        time.sleep(2)  # node1 lists, watches and campaigns again
        self._drop(name, vips=[vip4, vip6])
        time.sleep(1)  # the holder releases and clears the status
        self.refused_again()

    def refused_again(self):
        """The same Event twice from one kvpd: a Service refused (its VIP outside kvnetd's --vip-range), fixed,
        then refused again for the same cause. The second EgressFailed is a PATCH of the first (count 2),
        not a new Event object."""
        c, name, bad, good = self.c, "rbac-refused", "192.168.0.200", VIPS4[7]
        self.c.add_pod("%s-0" % name, 1, labels={"app": name}, dual=False)
        self.addCleanup(self._drop, name, "default", [bad, good])
        self.c.add_service(name, [bad])

        def failed():
            items = c.get("/api/v1/namespaces/default/events")["items"]
            return [e for e in items if e["involvedObject"]["name"] == name and e["reason"] == "EgressFailed"]
        self.wait(lambda: failed(), 20, "EgressFailed on %s" % name)
        c.annotate(name, loadbalancerIPs=good)
        self.wait(lambda: c.vip_holders(good) == ["node1"], 20, "%s bound on node1 once fixed" % good)
        c.annotate(name, loadbalancerIPs=bad)
        self.wait(lambda: [e.get("count") for e in failed()] == [2], 20, "one EgressFailed with count 2")
        ev = failed()[0]
        self.assertIn("kvnetd refused GrantVip", ev["message"])
        self.assertEqual(ev["type"], "Warning")

    def test_manifest_is_exact(self):
        self.scenario()
        recs = self.recorded()
        attrs = [a for a, _ in recs]
        print("\nrequests of %s (%d distinct):" % (SA_USER, len(recs)))
        for a, codes in recs:
            print("  %-70s HTTP %s" % (a.describe(), ",".join(str(x) for x in sorted(codes))))
        refused = [a.describe() for a, codes in recs if codes & {401, 403}]
        self.assertEqual(refused, [], "requests of the daemons refused")

        objs = json.loads(self.c.kubectl("get", "-f", RBAC_MANIFEST, "-o", "json"))["items"]
        full = Policy.from_objects(objs)
        self.assertEqual([a.describe() for a in attrs if not full.allows(SA_USER, sa_groups(), a)[0]], [],
                         "recorded requests the manifest does not allow")

        unused = []
        for label, variant in variants(objs):
            p = Policy.from_objects(variant)
            if all(p.allows(SA_USER, sa_groups(), a)[0] for a in attrs):
                unused.append(label)
        print("manifest variants checked: %d" % len(list(variants(objs))))
        self.assertEqual(unused, [], "parts of the manifest that no recorded request needs")

        # kubectl auth can-i agrees, for what the daemons did and for what they never do
        never = [Attrs("delete", True, "", "v1", "services", namespace="default", name="x"),
                 Attrs("update", True, "", "v1", "services", namespace="default", name="x"),
                 Attrs("get", True, "", "v1", "secrets", namespace="kube-system", name="x"),
                 Attrs("list", True, "", "v1", "configmaps", namespace="kube-system"),
                 Attrs("get", True, "", "v1", "configmaps", namespace="kube-system", name="other"),
                 Attrs("list", True, "", "v1", "pods", namespace="default"),
                 Attrs("delete", True, "coordination.k8s.io", "v1", "leases", namespace="default", name="x"),
                 Attrs("update", True, "", "v1", "events", namespace="default", name="x"),
                 Attrs("patch", True, "", "v1", "nodes", name="node1")]
        disagree = []
        for a in attrs + never:
            want = full.allows(SA_USER, sa_groups(), a)[0]
            if a in never:
                self.assertFalse(want, a.describe())
            got = self.can_i(a)
            if got != ("yes" if want else "no"):
                disagree.append("%s: kubectl says %s" % (a.describe(), got))
        self.assertEqual(disagree, [])

    def test_token_revocation(self):
        """What a rotation test uses: a new token of the ServiceAccount works until it is revoked."""
        tok = self.c.create_token(seconds=600)
        self.assertIn(SA_USER, self.c.kubectl("--token", tok, "auth", "whoami"))
        self.c.revoke_token(tok)
        p = self.c.kubectl("--token", tok, "auth", "whoami", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Unauthorized", p.stderr)

    def can_i(self, a):
        if not a.resource_request:
            args = [a.verb, a.path]
        else:
            res = a.resource + ("." + a.group if a.group else "")
            args = [a.verb, res + ("/" + a.name if a.name else "")]
            if a.subresource:
                args.append("--subresource=" + a.subresource)
            args += ["-n", a.namespace] if a.namespace else (["-A"] if a.resource not in CLUSTER_SCOPED else [])
        p = self.c.kubectl("auth", "can-i", "--as=" + SA_USER, *args, check=False)
        return p.stdout.strip() or p.stderr.strip()


CLUSTER_SCOPED = ("nodes", "servicecidrs", "namespaces")


def sa_groups():
    return ["system:serviceaccounts", "system:serviceaccounts:" + SERVICE_ACCOUNT[0], "system:authenticated"]


def variants(objs):
    """(label, objects) for the manifest minus one rule, one list element of a rule, or one binding."""
    for i, o in enumerate(objs):
        kind, name = o["kind"], o["metadata"]["name"]
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            yield "%s %s" % (kind, name), objs[:i] + objs[i + 1:]
            continue
        for j, r in enumerate(o.get("rules") or []):
            v = copy.deepcopy(objs)
            del v[i]["rules"][j]
            yield "%s %s rule %d (%s)" % (kind, name, j, json.dumps(r, sort_keys=True)), v
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                vals = r.get(field) or []
                if len(vals) < 2:
                    continue  # removing the only element is removing the rule (or, for names, widening it)
                for k, val in enumerate(vals):
                    v = copy.deepcopy(objs)
                    del v[i]["rules"][j][field][k]
                    yield "%s %s rule %d without %s %r" % (kind, name, j, field, val), v


if __name__ == "__main__":
    kvc_test.main()

# Varnish (7.x, with vmod xkey from varnish-modules) in front of the madbwpu-r API, honouring
# the same Surrogate-Key response header and the same purge request as `madbwpu-r edge`:
# madbwpu_r.edge.client.Invalidator can list this Varnish among its edges.
#
#   POST /_edge/purge   Authorization: Bearer <token>
#   xkey-purge: dataset:people version:abc     (hard)   or   xkey-softpurge: ... (soft)
#
# The Invalidator sends those headers next to its JSON body (the JSON is for `madbwpu-r edge`;
# VCL reads the headers). Purges by URL are not translated here: the API always purges by key.
# Replace @PURGE_TOKEN@ when deploying (e.g. from the MADBWPU_R_PURGE_TOKEN secret); unlike the
# Python edge, VCL compares the token as a plain string, so keep the ACL tight as well.
vcl 4.1;

import xkey;

backend api {
    .host = "127.0.0.1";
    .port = "8000";
    .probe = {
        .url = "/healthz";
        .interval = 5s;
        .timeout = 1s;
        .window = 5;
        .threshold = 3;
    }
}

acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.url == "/_edge/purge") {
        if (req.method != "POST") {
            return (synth(405, "Use POST."));
        }
        # As the edge and the API: no credential 401, a wrong one (or a foreign address) 403.
        if (!req.http.Authorization) {
            return (synth(401, "A valid Authorization: Bearer <purge token> header is required."));
        }
        if (client.ip !~ purgers || req.http.Authorization != "Bearer @PURGE_TOKEN@") {
            return (synth(403, "The credential given is not this edge's purge token."));
        }
        set req.http.X-Purged = "0";
        if (req.http.xkey-softpurge) {
            # Soft: objects become stale, so grace (stale-while-revalidate) still applies.
            set req.http.X-Purged = xkey.softpurge(req.http.xkey-softpurge);
        } elsif (req.http.xkey-purge) {
            set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
        }
        return (synth(200, "Purged"));
    }
    if (req.url == "/healthz") {
        return (synth(200, "OK"));
    }
}

sub vcl_backend_response {
    # xkey indexes each object by the space-separated tokens of its `xkey` header.
    if (beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    # Keep expired objects a while so Varnish revalidates them with If-None-Match (304).
    set beresp.keep = 1h;
}

sub vcl_deliver {
    # Surrogate-Key stays visible for debugging, as on `madbwpu-r edge`; xkey is internal.
    unset resp.http.xkey;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}

sub vcl_synth {
    if (req.url == "/_edge/purge" && resp.status == 200) {
        set resp.http.Content-Type = "application/json";
        set resp.body = {"{"purged": "} + req.http.X-Purged + {", "edge": "varnish"}"};
        return (deliver);
    }
    if (req.url == "/_edge/purge") {
        set resp.http.Content-Type = "application/problem+json";
        set resp.http.Cache-Control = "no-store";
        set resp.body = {"{"type": "about:blank", "status": "} + resp.status +
            {", "title": "Purge refused", "detail": ""} + resp.reason + {""}"};
        return (deliver);
    }
}

# Helpers of the demo guest's boot scripts (busybox sh; sourced). No jq: the
# config drive's and the metadata service's JSON is read with grep/sed/awk,
# which is enough for the few fields used here. Also sourced by the builder's
# unit test, which runs them with the host's busybox.

# json_string FILE KEY: the first string value of "KEY" in FILE (one line, no escaped quotes).
json_string() {
  grep -o "\"$2\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" "$1" 2>/dev/null | head -n 1 |
    sed 's/^"[^"]*"[[:space:]]*:[[:space:]]*"//; s/"$//'
}

# public_keys FILE: the SSH public keys of an OpenStack meta_data.json, one a
# line, without duplicates: the "data" of each "keys" entry and the values of
# the "public_keys" map.
public_keys() {
  {
    grep -o '"data"[[:space:]]*:[[:space:]]*"[^"]*"' "$1"
    grep -o '"public_keys"[[:space:]]*:[[:space:]]*{[^}]*}' "$1" |
      sed 's/^"public_keys"[[:space:]]*:[[:space:]]*{//; s/}$//' |
      grep -o '"[^"]*"[[:space:]]*:[[:space:]]*"[^"]*"'
  } 2>/dev/null |
    sed 's/^"[^"]*"[[:space:]]*:[[:space:]]*"//; s/"$//; s/\\n$//; s/\\n/ /g; s/\\\//\//g' |
    grep -E '^(ssh-|ecdsa-|sk-)' | awk '!seen[$0]++'
}

# static_network FILE: what an OpenStack network_data.json says for the first
# static IPv4 network, as lines "addr IP NETMASK", "route NETWORK NETMASK
# GATEWAY" (the default route has network 0.0.0.0) and "dns ADDRESS".
static_network() {
  tr '{}[],' '\n\n\n\n\n' <"$1" | awk -F'"' '
    $2 == "type" { v4 = ($4 == "ipv4") && !done; dns = ($4 == "dns"); if (ip != "" && !v4) done = 1 }
    v4 && $2 == "ip_address" && ip == "" { ip = $4; want = 1; next }
    v4 && $2 == "netmask" && want { print "addr", ip, $4; want = 0; next }
    v4 && ip != "" && $2 == "network" { net = $4 }
    v4 && ip != "" && $2 == "netmask" { mask = $4 }
    v4 && ip != "" && $2 == "gateway" { print "route", net, mask, $4 }
    dns && $2 == "address" && !(("dns " $4) in seen) { seen["dns " $4] = 1; print "dns", $4 }
  '
}

# prefix_length NETMASK: 255.255.255.0 -> 24
prefix_length() {
  echo "$1" | awk -F. '{
    n = 0
    for (i = 1; i <= 4; i++) { b = $i; while (b > 0) { n += b % 2; b = int(b / 2) } }
    print n
  }'
}

# ipv4_of IFACE: the interface's first IPv4 address, empty when it has none.
ipv4_of() {
  ip -4 addr show dev "$1" 2>/dev/null | awk '$1 == "inet" { sub("/.*", "", $2); print $2; exit }'
}

#!/bin/sh
# Makes the certificates of a TLS ringtrain cluster with openssl (P-256 keys, 1 year).
#
#   deploy/make-certs.sh DIR NAME [HOST ...]
#
# The first call creates the cluster CA (DIR/ca.pem, DIR/ca.key: keep ca.key offline). Each call
# then writes DIR/NAME.pem and DIR/NAME.key, a certificate signed by that CA naming NAME and every
# HOST (DNS names, `*.domain` wildcards or IP addresses), valid for TLS servers and clients alike:
# a coordinator's certificate must name the host clients and workers dial, a worker's the host it
# advertises (--advertise); a client's certificate (mutual TLS) may name anything.
#
#   deploy/make-certs.sh deploy/tls coordinator
#   deploy/make-certs.sh deploy/tls worker-1
#   deploy/make-certs.sh deploy/tls client
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME [HOST ...]" >&2; exit 2; }
dir=$1 name=$2
shift 2
mkdir -p "$dir"
umask 077
if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=ringtrain-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  chmod 644 "$dir/ca.pem"
fi
san=""
for host in "$name" "$@"; do
  case $host in
    *[!0-9.]*) case $host in *:*) entry="IP:$host" ;; *) entry="DNS:$host" ;; esac ;;
    *) entry="IP:$host" ;;
  esac
  san="${san:+$san,}$entry"
done
ext=$(mktemp)
trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$san" >"$ext"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
  -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 365 -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
chmod 644 "$dir/$name.pem"
echo "$dir/$name.pem ($san), key $dir/$name.key"

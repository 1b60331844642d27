#pragma once

// Certificates that the TLS tests make with openssl, valid for two days.

#include <string>

#include "process.hpp"

namespace twin::test {

/// Makes in `dir`: a test CA (`ca.pem`, `ca.key`); a certificate it signs for 127.0.0.1 and
/// localhost (`server.pem`, `server.key`); a client certificate it signs (`client.pem`,
/// `client.key`); and the self-signed certificate of another authority (`other.pem`,
/// `other.key`). False if openssl fails.
inline bool make_test_certs(const std::string& dir) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
    "cd '" + dir + "'"
    " && openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca"
    " && openssl req " + ec + " -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    " && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext"
    " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
    "    -out server.pem -days 2 -extfile server.ext"
    " && openssl req " + ec + " -keyout client.key -out client.csr -subj /CN=test-client"
    " && openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial"
    "    -out client.pem -days 2"
    " && openssl req -x509 " + ec + " -keyout other.key -out other.pem -days 2 -subj /CN=other";
  return run_to_end({"/bin/sh", "-c", script + " 2>/dev/null"}).code == 0;
}

} // namespace twin::test

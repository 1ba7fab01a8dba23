# Makes sendemail (which offers no CA option) trust ringpost's self-signed certificate:
# loaded with PERL5LIB=tests/clients/stock PERL5OPT=-MTrustRingpost RP_CERT=DATA_DIR/tls/cert.pem.
# sendemail calls start_SSL without a host name, so the name to check is given here too.
package TrustRingpost;
use strict;
use warnings;
use IO::Socket::SSL;
IO::Socket::SSL::set_defaults(
    SSL_ca_file       => $ENV{RP_CERT},
    SSL_verifycn_name => 'localhost',
);
1;

#!/usr/bin/perl
# postgrey-fill.pl DBDIR TRIPLETS_FILE - put every triplet of the file
# ("NET SENDER RCPT" lines, NET "a.b.c.0/24") into postgrey's BerkeleyDB
# as postgrey 1.37 itself keys and values them (lc "net/sender/rcpt" ->
# "first,last"), in the environment postgrey opens, so that postgrey can
# be asked about 100k or 1M triplets without a day of policy requests.
use strict;
use warnings;
use BerkeleyDB;

my ($dir, $file) = @ARGV;
my $env = BerkeleyDB::Env->new(
	-Home  => $dir,
	-Flags => DB_CREATE | DB_INIT_TXN | DB_INIT_MPOOL | DB_INIT_LOG,
) or die "env: $BerkeleyDB::Error\n";
my %db;
my $obj = tie(%db, 'BerkeleyDB::Btree', -Filename => 'postgrey.db',
	-Flags => DB_CREATE, -Env => $env) or die "db: $BerkeleyDB::Error\n";
my $now = time;
open(my $in, '<', $file) or die "$file: $!\n";
my $n = 0;
while (<$in>) {
	my ($net, $sender, $rcpt) = split;
	$net =~ s{/\d+$}{};
	my ($user, $domain) = split(/@/, $sender, 2);
	$user =~ s/\+.*//;
	$user =~ s/\b\d+\b/#/g;
	$db{lc "$net/$user\@$domain/$rcpt"} = "$now,$now";
	$n++;
}
undef $obj;
untie %db;
$env->txn_checkpoint(0, 0, 0);
print "filled $n\n";

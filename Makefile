# mailmoat - top-level Makefile.
#
#   make            host build: build/host/{mailmoat,mailmoatctl,cgi-bin/}
#   make test       installs what is missing, builds, runs every suite
#   make run        installs what is missing, builds, runs the appliance
#   make firmware BOARD=x86_64|rpi4
#
# Each area keeps its own fragment (proxy/proxy.mk, webui-cgi/webui.mk,
# tests/tests.mk, firmware/firmware.mk, bench/bench.mk); this file only
# sets the shared variables and the top-level targets.

BUILD    ?= build/host
CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
CFLAGS   ?=
CPPFLAGS += -Iproxy -D_GNU_SOURCE
ALL_CFLAGS = -std=c11 $(OPT) $(WARN) $(CFLAGS)

# libspf2: the project's patched copy, built from Debian's source package.
SPF2_PREFIX := build/spf2-host
SPF2_LIB    := $(SPF2_PREFIX)/lib/libspf2.a
CPPFLAGS    += -I$(SPF2_PREFIX)/include
LDLIBS      := $(SPF2_LIB) -lresolv -luv -lcares -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm

.PHONY: all deps test run clean firmware
all:

include proxy/proxy.mk
-include webui-cgi/webui.mk
-include tests/tests.mk
-include firmware/firmware.mk
-include bench/bench.mk

deps:
	tools/install-deps

$(SPF2_LIB):
	firmware/libspf2.sh $(abspath $(SPF2_PREFIX)) "$(CC)" ""

clean:
	rm -rf build

.PHONY: run-host
run-host: deps all
	tools/run-host

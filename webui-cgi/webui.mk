# webui-cgi/webui.mk - the web UI's CGI programs (one per page, plus the
# shared cgi.c), built into build/host/cgi-bin/ by `make`.  The firmware
# build compiles the same sources with musl (firmware/app.sh).

CGI_PAGES := $(filter-out cgi,$(basename $(notdir $(wildcard webui-cgi/*.c))))
CGI_BIN   := $(CGI_PAGES:%=$(BUILD)/cgi-bin/%)

all: $(CGI_BIN)

$(BUILD)/cgi-bin/%: webui-cgi/%.c webui-cgi/cgi.c webui-cgi/cgi.h proxy/proxy.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iwebui-cgi $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< webui-cgi/cgi.c -lmbedcrypto

# The library's unit test (tests/unit/test_cgi.c) links cgi.c, not the daemon.
$(BUILD)/tests/test_cgi: tests/unit/test_cgi.c tests/unit/t.h webui-cgi/cgi.c webui-cgi/cgi.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iwebui-cgi -Itests/unit $(ALL_CFLAGS) -o $@ $< webui-cgi/cgi.c -lmbedcrypto

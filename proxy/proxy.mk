# proxy/proxy.mk - the daemon and its control tool.
# Every proxy/*.c and proxy/checks/*.c except the two mains goes into
# libmailmoat.a, which the unit tests link as well.

PROXY_MAINS := proxy/main.c proxy/mailmoatctl.c
PROXY_SRC   := $(filter-out $(PROXY_MAINS),$(wildcard proxy/*.c proxy/checks/*.c))
PROXY_OBJ   := $(PROXY_SRC:%.c=$(BUILD)/obj/%.o)
PROXY_LIB   := $(BUILD)/libmailmoat.a
PROXY_HDR   := $(wildcard proxy/*.h proxy/checks/*.h)

all: $(BUILD)/mailmoat $(BUILD)/mailmoatctl

$(BUILD)/obj/%.o: %.c $(PROXY_HDR) | $(SPF2_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(PROXY_LIB): $(PROXY_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/mailmoat: $(BUILD)/obj/proxy/main.o $(PROXY_LIB) $(SPF2_LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(PROXY_LIB) $(LDLIBS)

$(BUILD)/mailmoatctl: $(BUILD)/obj/proxy/mailmoatctl.o
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $<

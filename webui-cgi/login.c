/*
 * login.c - /cgi-bin/login: the login form (fields user, password).
 *
 * GET shows the form, or sends a visitor with a live session to the
 * dashboard.  POST checks user "admin" and the password (cgi.c: PBKDF2),
 * at most CGI_LOGIN_FAILS failures per client address per
 * CGI_LOGIN_WINDOW seconds (then 429, also for the right password), every
 * failure logged.  Success: a new random session, cookie mmsid (HttpOnly,
 * SameSite=Strict, Max-Age = the session's lifetime), 303 to the
 * dashboard.  The form has no CSRF token: there is no session yet to bind
 * it to, and the cookie is SameSite=Strict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgi.h"

/* form - the login page, with an optional error */
static void
form(const struct cgi_req *r, int status, const char *err)
{
	if (status != 200)
		printf("Status: %d\r\n", status);
	cgi_page_begin(r, "Log in");
	if (err)
		cgi_msg(false, err);
	printf("<form method=\"post\" action=\"/cgi-bin/login\">"
	       "<label for=\"user\">User</label>"
	       "<input id=\"user\" name=\"user\" value=\"admin\" "
	       "autocomplete=\"username\" required>"
	       "<label for=\"password\">Password</label>"
	       "<input id=\"password\" name=\"password\" type=\"password\" "
	       "autocomplete=\"current-password\" autofocus required>"
	       "<p><button type=\"submit\" id=\"login\">Log in</button></p>"
	       "</form>\n<p><small>The first password was shown on the "
	       "console at first boot.</small></p>\n");
	cgi_page_end();
	exit(0);
}

/* main - show the form or log in */
int
main(void)
{
	struct cgi_req r;
	const char *user, *pw;
	char token[CGI_TOKEN_HEX + 1];

	cgi_begin(&r, false);
	if (!r.post) {
		if (r.session[0])
			cgi_redirect("/cgi-bin/dashboard");
		form(&r, 200, NULL);
	}
	r.session[0] = '\0'; /* a new login always gets a new session */
	if (cgi_login_blocked(r.remote)) {
		cgi_login_failed(r.remote);
		form(&r, 429,
		     "Too many failed logins from your address: wait a few "
		     "minutes and try again.");
	}
	user = cgi_param(&r, "user");
	pw = cgi_param(&r, "password");
	if (!user || !pw || strcmp(user, "admin") != 0 || strlen(pw) > 1024 ||
	    !cgi_password_verify(pw)) {
		cgi_login_failed(r.remote);
		form(&r, 403, "Wrong user or password.");
	}
	if (cgi_session_new(token) < 0)
		cgi_error(500, "cannot create a login session");
	cgi_login_ok(r.remote);
	printf("Status: 303 See Other\r\n"
	       "Set-Cookie: mmsid=%s; Path=/; HttpOnly; SameSite=Strict; "
	       "Max-Age=%d%s\r\n"
	       "Location: /cgi-bin/dashboard\r\nCache-Control: no-store\r\n"
	       "Content-Type: text/plain\r\n\r\nlogged in\n",
	       token, CGI_SESSION_TTL, getenv("HTTPS") ? "; Secure" : "");
	return 0;
}

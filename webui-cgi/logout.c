/*
 * logout.c - /cgi-bin/logout: end the login session.
 *
 * POST (with the csrf field, checked by cgi_begin) forgets the session and
 * clears the cookie; GET shows the button.  Either way one ends on the
 * login page.
 */
#include <stdio.h>

#include "cgi.h"

/* main - log out */
int
main(void)
{
	struct cgi_req r;

	cgi_begin(&r, true);
	if (!r.post) {
		cgi_page_begin(&r, "Log out");
		printf("<form method=\"post\" action=\"/cgi-bin/logout\">");
		cgi_csrf_field(&r);
		printf("<button type=\"submit\">Log out</button></form>\n");
		cgi_page_end();
		return 0;
	}
	cgi_session_end(r.session);
	printf("Status: 303 See Other\r\n"
	       "Set-Cookie: mmsid=; Path=/; HttpOnly; SameSite=Strict; "
	       "Max-Age=0\r\n"
	       "Location: /cgi-bin/login\r\nCache-Control: no-store\r\n"
	       "Content-Type: text/plain\r\n\r\nlogged out\n");
	return 0;
}

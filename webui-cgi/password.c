/*
 * password.c - /cgi-bin/password: change the admin password.
 *
 * Fields current, password, password2 (and csrf).  The current password
 * must be right (a failure counts towards the login rate limit), the new
 * one at least 8 characters and typed twice.  Stored as a salted
 * PBKDF2-SHA256 hash (cgi_password_set).
 */
#include <stdio.h>
#include <string.h>

#include "cgi.h"

/* main - the form, or the change */
int
main(void)
{
	struct cgi_req r;
	const char *cur, *pw, *pw2, *err = NULL;
	bool done = false;

	cgi_begin(&r, true);
	if (r.post) {
		cur = cgi_param(&r, "current");
		pw = cgi_param(&r, "password");
		pw2 = cgi_param(&r, "password2");
		if (cgi_login_blocked(r.remote)) {
			err = "Too many failed attempts: wait a few minutes.";
		} else if (!cur || strlen(cur) > 1024 ||
		           !cgi_password_verify(cur)) {
			cgi_login_failed(r.remote);
			err = "The current password is wrong.";
		} else if (!pw || strlen(pw) < 8 || strlen(pw) > 1024) {
			err = "The new password must have 8 to 1024 "
			      "characters.";
		} else if (!pw2 || strcmp(pw, pw2) != 0) {
			err = "The two new passwords differ.";
		} else if (cgi_password_set(pw) < 0) {
			err = "Cannot store the new password.";
		} else {
			done = true;
		}
	}
	cgi_page_begin(&r, "Password");
	if (err)
		cgi_msg(false, err);
	if (done)
		cgi_msg(true, "The admin password is changed.");
	printf("<form method=\"post\" action=\"/cgi-bin/password\">");
	cgi_csrf_field(&r);
	printf("<label for=\"current\">Current password</label>"
	       "<input id=\"current\" name=\"current\" type=\"password\" "
	       "autocomplete=\"current-password\" required>"
	       "<label for=\"password\">New password (8 characters or "
	       "more)</label><input id=\"password\" name=\"password\" "
	       "type=\"password\" autocomplete=\"new-password\" required>"
	       "<label for=\"password2\">New password again</label>"
	       "<input id=\"password2\" name=\"password2\" type=\"password\" "
	       "autocomplete=\"new-password\" required>"
	       "<p><button type=\"submit\" id=\"change\">Change</button></p>"
	       "</form>\n");
	cgi_page_end();
	return 0;
}

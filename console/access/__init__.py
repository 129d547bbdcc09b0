"""Who may use the console and how: users, tokens, sessions, CSRF and security headers."""

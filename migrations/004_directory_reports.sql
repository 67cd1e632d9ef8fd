-- Reports of seed 004: how each provider is used, and identities nobody has used for 90 days.

CREATE VIEW pgward.provider_usage AS
SELECT p.code AS provider,
       p.name,
       p.is_active,
       count(DISTINCT i.user_id) AS total_users,
       count(DISTINCT i.user_id) FILTER (WHERE i.is_active AND u.is_active) AS active_users,
       count(DISTINCT i.user_id) FILTER (WHERE i.last_login_at > now() - interval '30 days') AS users_logged_in_30d
FROM pgward.provider p
LEFT JOIN pgward.user_identity i USING (provider_id)
LEFT JOIN pgward.user_info u USING (user_id)
GROUP BY p.provider_id, p.code, p.name, p.is_active;

CREATE VIEW pgward.stale_identity AS
SELECT u.user_id,
       u.email,
       p.code AS provider,
       i.provider_user_id,
       i.last_login_at,
       now() - i.last_login_at AS idle_for
FROM pgward.user_identity i
JOIN pgward.user_info u USING (user_id)
JOIN pgward.provider p USING (provider_id)
WHERE i.last_login_at IS NULL OR i.last_login_at < now() - interval '90 days';

DROP TABLE invitations;
DROP TABLE role_assignments;
DROP TABLE memberships CASCADE;
DROP TABLE users;
DROP TABLE tenants;

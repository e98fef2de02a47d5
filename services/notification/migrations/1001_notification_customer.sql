-- Whose order a notification is about, so a customer lists only its own. NULL for rows recorded
-- from events of builds that did not carry the customer.
ALTER TABLE notifications ADD COLUMN customer_id text;
CREATE INDEX notifications_customer ON notifications (customer_id, id DESC) WHERE customer_id IS NOT NULL;

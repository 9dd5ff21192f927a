SELECT skiplock.enqueue_content_job(:company, 'noop');

// The signup form's one script: it tells the service the reader's time zone (an IANA name
// such as "Europe/Berlin"), so digests can come at the reader's own hour. Without it the
// form works the same, and the site's time zone is used.
(function () {
  "use strict";
  var field = document.getElementById("timezone");
  if (!field || field.value) {
    return;
  }
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    // An old browser without Intl: the site's time zone it is.
  }
})();
